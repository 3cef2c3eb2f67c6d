// Keyboard help for the desk: Ctrl+Enter in the call record analyses it (the agent's hands stay on the keyboard).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const text = document.getElementById("call-text");
  const analyse = document.getElementById("analyse");
  if (text && analyse) {
    text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        analyse.click();
      }
    });
  }
  // After an analysis, bring its panel into view so the suggestion is read first.
  const panel = document.getElementById("analysis");
  if (panel) panel.scrollIntoView({ block: "start" });
});
