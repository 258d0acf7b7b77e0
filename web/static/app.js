// Small progressive enhancements; every page works without this file.
document.addEventListener("click", (event) => {
  const confirmer = event.target.closest("[data-confirm]");
  if (confirmer) {
    if (!window.confirm(confirmer.dataset.confirm)) {
      event.preventDefault();
      return;
    }
    // Confirmed here: the server skips its own confirmation page.
    const form = confirmer.form;
    if (form && !form.querySelector('input[name="confirmed"]')) {
      const confirmed = document.createElement("input");
      confirmed.type = "hidden";
      confirmed.name = "confirmed";
      confirmed.value = "yes";
      form.appendChild(confirmed);
    }
  }
  const copier = event.target.closest("[data-copy]");
  if (copier) {
    const source = document.querySelector(copier.dataset.copy);
    if (source && navigator.clipboard) {
      navigator.clipboard.writeText(source.textContent.trim()).then(() => {
        copier.textContent = "Copied";
      });
    }
  }
});

// Pod logs: "Follow" streams new lines through server-sent events.
(() => {
  const button = document.getElementById("follow");
  const log = document.getElementById("log");
  if (!button || !log || !window.EventSource) return;
  button.hidden = false;
  let source = null;
  button.addEventListener("click", () => {
    if (source) {
      source.close();
      source = null;
      button.textContent = "Follow";
      button.removeAttribute("aria-pressed");
      return;
    }
    log.textContent = "";
    source = new EventSource(button.dataset.follow);
    // The server ends a stream after a while and the browser reconnects:
    // the fresh stream starts with the last lines again.
    source.onopen = () => {
      log.textContent = "";
    };
    button.textContent = "Stop following";
    button.setAttribute("aria-pressed", "true");
    source.onmessage = (event) => {
      const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
      log.textContent += event.data + "\n";
      if (atBottom) log.scrollTop = log.scrollHeight;
    };
  });
})();

// Live parts of a page refresh themselves; not while someone is filling
// in a form that opened inside them (a stage's Cancel or More).
document.addEventListener("htmx:beforeRequest", (event) => {
  const live = event.detail && event.detail.elt;
  if (live && live.id === "order-live" && live.querySelector("details[open]")) {
    event.preventDefault();
  }
});

// At phone width the main menu folds behind a Menu button. Without this
// script the button stays hidden and the menu wraps instead.
(() => {
  const button = document.getElementById("menu-button");
  const panel = document.getElementById("mainnav");
  if (!button || !panel) return;
  button.hidden = false;
  document.documentElement.classList.add("menu-folds");
  button.addEventListener("click", () => {
    const open = button.getAttribute("aria-expanded") !== "true";
    button.setAttribute("aria-expanded", String(open));
    panel.classList.toggle("open", open);
  });
})();

// The version picker: a filter box over its options (name, date, message).
// The picker is swapped in by htmx, so this listens on the document.
const showVersionFilter = () => {
  const filter = document.getElementById("version-filter");
  if (filter) filter.hidden = false;
};
document.addEventListener("DOMContentLoaded", showVersionFilter);
document.addEventListener("htmx:afterSwap", showVersionFilter);
document.addEventListener("input", (event) => {
  if (event.target.id !== "version-filter") return;
  const select = document.getElementById("version-select");
  if (!select) return;
  const words = event.target.value.toLowerCase().split(/\s+/).filter(Boolean);
  let first = null;
  for (const option of select.options) {
    const text = option.textContent.toLowerCase();
    option.hidden = !words.every((w) => text.includes(w));
    if (!option.hidden && !first) first = option;
  }
  // The selection follows the filter when it no longer matches.
  if (first && select.selectedOptions[0]?.hidden) select.value = first.value;
});
