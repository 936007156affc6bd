// Datasets page: drop or choose a file and it uploads at once with a progress bar.
// Without this script the form posts normally; with it the same POST /datasets goes over
// XMLHttpRequest (for upload progress). Handlers are delegated to the document, so they keep
// working after a 422 response replaces the page's main content.
"use strict";
(function () {
  const FORM = "form[data-upload]";

  function formatBytes(n) {
    if (n < 1024) return n + " B";
    const units = ["KiB", "MiB", "GiB"];
    let value = n / 1024;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return value.toFixed(value < 10 ? 1 : 0) + " " + units[unit];
  }

  function parts(form) {
    return {
      zone: form.querySelector(".dropzone"),
      input: form.querySelector("input[type=file]"),
      status: form.querySelector("[data-upload-status]"),
      progress: form.querySelector("[data-upload-status] progress"),
      percent: form.querySelector("[data-upload-percent]"),
      bytes: form.querySelector("[data-upload-bytes]"),
      message: form.querySelector("[data-upload-message]"),
      submit: form.querySelector("button[type=submit]"),
    };
  }

  function showMessage(form, text) {
    const p = parts(form);
    p.message.textContent = text;
    p.message.hidden = !text;
  }

  function setBusy(form, busy) {
    const p = parts(form);
    form.classList.toggle("is-uploading", busy);
    form.setAttribute("aria-busy", busy ? "true" : "false");
    p.submit.disabled = busy;
    p.input.disabled = busy;
  }

  function report(form, loaded, total) {
    const p = parts(form);
    const percent = total ? Math.min(100, Math.round((loaded / total) * 100)) : 0;
    p.progress.value = percent;
    p.percent.textContent = percent + "%";
    p.bytes.textContent = formatBytes(loaded) + " of " + formatBytes(total) + " sent";
    form.dispatchEvent(
      new CustomEvent("upload-progress", { bubbles: true, detail: { loaded, total, percent } })
    );
  }

  function replaceMain(html) {
    const doc = new DOMParser().parseFromString(html, "text/html");
    const incoming = doc.querySelector("main");
    const main = document.querySelector("main");
    if (!incoming || !main) return false;
    main.replaceChildren(...Array.from(incoming.childNodes, (node) => document.importNode(node, true)));
    const alert = main.querySelector("[role=alert]:not([hidden])");
    if (alert) {
      alert.tabIndex = -1;
      alert.focus();
    }
    return true;
  }

  function upload(form, file) {
    const p = parts(form);
    const limit = Number(form.dataset.maxBytes || 0);
    showMessage(form, "");
    if (limit && file.size > limit) {
      showMessage(form, "File too large: " + file.name + " is " + formatBytes(file.size) +
        "; the limit is " + formatBytes(limit) + ".");
      return;
    }
    const data = new FormData(form);
    data.set("file", file, file.name);
    p.status.hidden = false;
    p.zone.querySelector("[data-upload-name]").textContent = file.name;
    report(form, 0, file.size);
    setBusy(form, true);

    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "text/html");
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) report(form, event.loaded, event.total);
    };
    xhr.upload.onload = () => {
      report(form, file.size, file.size);
      p.bytes.textContent = formatBytes(file.size) + " sent; checking the rows…";
    };
    xhr.onload = () => {
      const landed = xhr.responseURL && new URL(xhr.responseURL).pathname !== new URL(form.action).pathname;
      if (xhr.status === 200 && landed) {
        window.location.assign(xhr.responseURL); // the 303 was followed to the dataset's page
        return;
      }
      setBusy(form, false);
      p.input.value = "";
      if (xhr.status === 413) {
        showMessage(form, "File too large: the upload limit is " + (limit ? formatBytes(limit) : "set by the server") + ".");
      } else if (xhr.status === 422 && replaceMain(xhr.responseText)) {
        return; // the page, re-rendered with its problem list
      } else {
        showMessage(form, "Upload failed (HTTP " + xhr.status + "). Try again, or reload the page.");
      }
      p.status.hidden = true;
    };
    xhr.onerror = () => {
      setBusy(form, false);
      p.input.value = "";
      p.status.hidden = true;
      showMessage(form, "Upload failed: the connection was lost. Try again.");
    };
    xhr.send(data);
  }

  function zoneOf(event) {
    return event.target instanceof Element ? event.target.closest(FORM + " .dropzone") : null;
  }

  function carriesFiles(event) {
    return event.dataTransfer && Array.from(event.dataTransfer.types).includes("Files");
  }

  document.addEventListener("change", (event) => {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || input.type !== "file") return;
    const form = input.closest(FORM);
    if (form && input.files && input.files.length) upload(form, input.files[0]);
  });

  document.addEventListener("submit", (event) => {
    const form = event.target.closest && event.target.closest(FORM);
    if (!form) return;
    const input = parts(form).input;
    if (!input.files || !input.files.length) return; // let the browser say the file is required
    event.preventDefault();
    upload(form, input.files[0]);
  });

  // A file dropped anywhere else must not make the browser open it instead of the page.
  for (const type of ["dragenter", "dragover"]) {
    document.addEventListener(type, (event) => {
      if (!carriesFiles(event)) return;
      event.preventDefault();
      const zone = zoneOf(event);
      event.dataTransfer.dropEffect = zone ? "copy" : "none";
      document.querySelectorAll(".dropzone.is-dragover").forEach((z) => z !== zone && z.classList.remove("is-dragover"));
      if (zone) zone.classList.add("is-dragover");
    });
  }

  document.addEventListener("dragleave", (event) => {
    const zone = zoneOf(event);
    if (zone && !(event.relatedTarget instanceof Node && zone.contains(event.relatedTarget))) {
      zone.classList.remove("is-dragover");
    }
  });

  document.addEventListener("drop", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    const zone = zoneOf(event);
    document.querySelectorAll(".dropzone.is-dragover").forEach((z) => z.classList.remove("is-dragover"));
    const form = zone && zone.closest(FORM);
    if (!form || form.classList.contains("is-uploading")) return;
    const file = event.dataTransfer.files[0];
    if (file) upload(form, file);
  });

  document.documentElement.classList.add("js-upload");
})();
