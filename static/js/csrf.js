// Requests that change something carry the session's CSRF token: htmx's and our own fetch()es.
(function () {
  "use strict";
  const meta = document.querySelector('meta[name="csrf-token"]');
  const token = meta ? meta.content : "";
  if (!token) return;
  const safe = new Set(["GET", "HEAD", "OPTIONS"]);
  document.addEventListener("htmx:configRequest", (event) => {
    event.detail.headers["X-CSRF-Token"] = token;
  });
  const plainFetch = window.fetch.bind(window);
  window.fetch = function (input, init) {
    const options = Object.assign({}, init || {});
    const method = (options.method || (input instanceof Request ? input.method : "GET")).toUpperCase();
    const url = new URL(input instanceof Request ? input.url : String(input), window.location.href);
    if (!safe.has(method) && url.origin === window.location.origin) {
      const headers = new Headers(options.headers || (input instanceof Request ? input.headers : undefined));
      headers.set("X-CSRF-Token", token);
      options.headers = headers;
    }
    return plainFetch(input, options);
  };
  window.tunedeckCsrfToken = token;
})();
