"""Work orders: intake to archive, with every step recorded.

`models.py` the tables · `intake.py` the one intake every channel calls · `lifecycle.py` the lifecycle as a table ·
`roles.py` who may do, see and act on what · `service.py` the steps (keyword-only functions taking the session) ·
`dispatch.py` an agent's confirm/change of department · `queues.py` the work queues · `search.py` · `export.py` ·
`outbox.py` department webhooks and callbacks · `indicators/` the indicator catalogue and its computations ·
`vitals/` city vitals · `open311.py` the Open311 mapping · `importer.py` bulk import of past orders · `seed.py` the
demo history."""
import hotline.core.runtime  # noqa: F401  (thread settings before numpy/torch/faiss load)
