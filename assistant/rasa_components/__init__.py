"""Custom Rasa components. Imported by the Rasa process only (its venv has rasa; the main venv does not)."""
