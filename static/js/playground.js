// Playground: 1–4 chat panes side by side, one prompt box that streams to every pane at once
// (fetch + ReadableStream over the web app's /v1 pass-through), blind A/B votes and batch
// comparisons. Model output is only ever set with textContent.
(function () {
  "use strict";
  const root = document.getElementById("playground");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const blind = root.dataset.blind === "1";
  const defaults = (root.dataset.defaults || "").split(",").filter(Boolean);
  const panesEl = $("pg-panes");
  const template = $("pg-pane-template");
  const promptEl = $("pg-prompt");
  const MAX_PANES = 4;
  const panes = [];
  let controller = null; // aborts the round in flight
  let lastPrompt = "";

  async function errorMessage(response) {
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) return body.error.message;
    } catch (_) { /* not JSON */ }
    return `HTTP ${response.status} ${response.statusText}`;
  }

  // The `data:` payloads of a server-sent event stream, parsed, until [DONE].
  async function* sseEvents(response) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, cut).replace(/\r$/, "");
        buffer = buffer.slice(cut + 1);
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") { reader.cancel().catch(() => {}); return; }
        yield JSON.parse(data);
      }
    }
  }

  const number = (input, fallback) => {
    const value = Number(input.value);
    return input.value === "" || Number.isNaN(value) ? fallback : value;
  };
  const seconds = (s) => (s < 10 ? s.toFixed(2) : s.toFixed(1)) + " s";

  class Pane {
    constructor(model) {
      this.el = template.content.firstElementChild.cloneNode(true);
      const q = (sel) => this.el.querySelector(sel);
      this.title = q(".pg-title");
      this.select = q(".pg-model");
      this.chat = q(".pg-chat");
      this.empty = q(".pg-empty");
      this.ttft = q(".pg-ttft");
      this.tps = q(".pg-tps");
      this.state = q(".pg-state");
      this.inputs = { temperature: q(".pg-temperature"), top_p: q(".pg-top-p"), max_tokens: q(".pg-max-tokens"), system: q(".pg-system") };
      this.removeBtn = q(".pg-remove");
      this.messages = [];
      this.hiddenModel = null; // blind mode: the drawn model, never put in the page
      if (model) this.select.value = model;
      this.select.title = this.select.value; // the full name where a narrow pane cuts it short
      this.select.addEventListener("change", () => { this.select.title = this.select.value; });
      if (blind) { this.select.remove(); this.removeBtn.remove(); }
      else this.removeBtn.addEventListener("click", () => removePane(this));
      this.empty.textContent = blind ? "Draw a pair above, then ask something below." : "Ask something below; this pane keeps its own conversation.";
    }

    model() { return blind ? this.hiddenModel : this.select.value; }

    settings() {
      return {
        temperature: number(this.inputs.temperature, 0.7),
        top_p: number(this.inputs.top_p, 1),
        max_tokens: Math.round(number(this.inputs.max_tokens, 256)),
        system: this.inputs.system.value.trim(),
      };
    }

    bubble(kind, text) {
      this.empty.hidden = true;
      const li = document.createElement("li");
      li.className = "pg-msg pg-msg-" + kind;
      const role = document.createElement("span");
      role.className = "pg-role";
      role.textContent = { user: "You", assistant: "Model", error: "Error" }[kind];
      const body = document.createElement("div");
      body.className = "pg-text";
      body.textContent = text;
      li.append(role, body);
      this.chat.append(li);
      this.chat.scrollTop = this.chat.scrollHeight;
      return body;
    }

    setState(state, text) {
      this.el.dataset.state = state;
      this.state.textContent = text || "";
    }

    clear() {
      this.messages = [];
      this.chat.querySelectorAll(".pg-msg").forEach((li) => li.remove());
      this.empty.hidden = false;
      this.ttft.textContent = "—";
      this.tps.textContent = "—";
      this.setState("idle");
    }

    // One turn: stream the reply into a new bubble; resolves to "done", "stopped" or "error".
    async send(prompt, signal) {
      this.messages.push({ role: "user", content: prompt });
      this.bubble("user", prompt);
      const reply = this.bubble("assistant", "");
      reply.parentElement.classList.add("pg-streaming");
      const s = this.settings();
      const messages = s.system ? [{ role: "system", content: s.system }, ...this.messages] : this.messages.slice();
      const body = { model: this.model(), messages, temperature: s.temperature, top_p: s.top_p, max_tokens: s.max_tokens, stream: true };
      this.ttft.textContent = "…";
      this.tps.textContent = "—";
      this.el.dataset.deltas = "0";
      this.setState("streaming", "waiting…");
      this.sayIfLoading(body.model);
      const started = performance.now();
      let first = null;
      let text = "";
      let deltas = 0;
      let usage = null;
      let timing = null;
      let outcome = "done";
      try {
        const response = await fetch("/v1/chat/completions", {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
          body: JSON.stringify(body),
          signal,
        });
        if (!response.ok) throw new Error(await errorMessage(response));
        for await (const event of sseEvents(response)) {
          if (event.error) throw new Error(event.error.message || "the generation failed");
          const choice = event.choices && event.choices[0];
          const content = choice && choice.delta && choice.delta.content;
          if (content) {
            if (first === null) {
              delete this.el.dataset.loading;
              first = performance.now();
              this.ttft.textContent = seconds((first - started) / 1000);
              this.setState("streaming", "streaming…");
            }
            text += content;
            deltas += 1;
            this.el.dataset.deltas = String(deltas);
            reply.textContent = text;
            this.chat.scrollTop = this.chat.scrollHeight;
          }
          if (event.usage) usage = event.usage;
          if (event.timing) timing = event.timing;
        }
      } catch (err) {
        outcome = err.name === "AbortError" ? "stopped" : "error";
        if (outcome === "error") this.bubble("error", err.message || String(err));
      }
      reply.parentElement.classList.remove("pg-streaming");
      if (first === null) this.ttft.textContent = "—";
      this.showSpeed(first, usage ? usage.completion_tokens : deltas, timing);
      if (text && !text.trim()) this.markBlank(reply, text);
      if (text) this.messages.push({ role: "assistant", content: text });
      else {
        reply.parentElement.remove();
        this.messages.pop(); // no answer: the next turn does not carry this question
      }
      this.setState(outcome, { done: "", stopped: "stopped", error: "failed" }[outcome]);
      return outcome;
    }

    // A model whose weights are not in memory yet takes seconds to its first token: say so.
    async sayIfLoading(model) {
      try {
        const answer = await fetch(`/v1/tunedeck/models/${encodeURIComponent(model)}/state`);
        if (!answer.ok) return;
        const { state } = await answer.json();
        if (state !== "ready" && this.el.dataset.state === "streaming" && this.state.textContent === "waiting…") {
          this.el.dataset.loading = "true";
          this.state.textContent = "loading model… (its first reply loads the weights)";
        }
      } catch (err) {
        // no state to show: the reply says the rest
      }
    }

    // A reply of only spaces and newlines would be an empty-looking bubble: say what it holds.
    markBlank(reply, text) {
      const note = document.createElement("div");
      note.className = "pg-blank-note";
      const visible = text.slice(0, 40).replace(/ /g, "·").replace(/\n/g, "\\n").replace(/\t/g, "\\t").replace(/\r/g, "\\r");
      note.textContent = `only whitespace (${text.length} characters): ${visible}${text.length > 40 ? "…" : ""}`;
      reply.parentElement.classList.add("pg-blank");
      reply.after(note);
    }

    // Content tokens per second after the first one, as this browser saw them arrive.
    showSpeed(first, tokens, timing) {
      const elapsed = first === null ? 0 : (performance.now() - first) / 1000;
      let rate = tokens > 1 && elapsed > 0 ? (tokens - 1) / elapsed : null;
      if (rate === null && timing && timing.tokens_per_s) rate = timing.tokens_per_s;
      this.tps.textContent = rate === null ? "—" : rate.toFixed(1);
    }
  }

  function layout() {
    panesEl.dataset.count = String(panes.length);
    panes.forEach((pane, i) => {
      if (!blind) pane.title.textContent = String(i + 1);
      if (pane.removeBtn.isConnected) pane.removeBtn.disabled = panes.length <= 1 || controller !== null;
    });
    const add = $("pg-add");
    if (add) add.disabled = panes.length >= MAX_PANES || controller !== null;
    const count = $("pg-count");
    if (count) count.textContent = `${panes.length} of ${MAX_PANES} panes`;
  }

  function addPane(model) {
    if (panes.length >= MAX_PANES) return null;
    const used = new Set(panes.map((p) => p.model()));
    const options = Array.from(template.content.querySelectorAll(".pg-model option")).map((o) => o.value);
    const pane = new Pane(model || options.find((m) => !used.has(m)) || options[0]);
    panes.push(pane);
    panesEl.append(pane.el);
    layout();
    return pane;
  }

  function removePane(pane) {
    if (panes.length <= 1 || controller) return;
    panes.splice(panes.indexOf(pane), 1);
    pane.el.remove();
    layout();
    (panes[0].select || promptEl).focus();
  }

  function setBusy(busy) {
    root.dataset.busy = busy ? "1" : "0";
    $("pg-send").disabled = busy;
    $("pg-stop").disabled = !busy;
    $("pg-clear").disabled = busy;
    layout();
  }

  async function sendAll() {
    const prompt = promptEl.value;
    if (!prompt.trim() || controller) return;
    if (blind && !pair) { blindStatus("Draw a pair first."); return; }
    if (blind && voted) { blindStatus("You voted on this pair; draw a new one."); return; }
    controller = new AbortController();
    setBusy(true);
    promptEl.value = "";
    lastPrompt = prompt;
    const outcomes = await Promise.all(panes.map((pane) => pane.send(prompt, controller.signal)));
    controller = null;
    setBusy(false);
    if (blind) afterBlindRound(outcomes);
    promptEl.focus();
  }

  $("pg-prompt-form").addEventListener("submit", (event) => { event.preventDefault(); sendAll(); });
  promptEl.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendAll();
    } else if (event.key === "Escape" && controller) controller.abort();
  });
  $("pg-stop").addEventListener("click", () => { if (controller) controller.abort(); });
  $("pg-clear").addEventListener("click", () => {
    panes.forEach((pane) => pane.clear());
    if (blind) hideVote();
    promptEl.focus();
  });

  // ---- blind mode ----------------------------------------------------------------------------
  let pair = null; // [model A, model B], kept in memory only
  let voted = false;

  function blindStatus(text) { const el = $("pg-blind-status"); if (el) el.textContent = text; }
  function hideVote() {
    $("pg-vote").hidden = true;
    $("pg-reveal").textContent = "";
  }

  function drawPair() {
    const chosen = Array.from(document.querySelectorAll("input[name=candidate]:checked")).map((c) => c.value);
    if (chosen.length < 2) { blindStatus("Tick at least two models."); return; }
    const i = Math.floor(Math.random() * chosen.length);
    let j = Math.floor(Math.random() * (chosen.length - 1));
    if (j >= i) j += 1;
    pair = [chosen[i], chosen[j]];
    voted = false;
    panes.forEach((pane, k) => {
      pane.hiddenModel = pair[k];
      pane.title.textContent = "AB"[k];
      pane.clear();
      pane.empty.textContent = "Ask something below; both answer the same prompt.";
    });
    hideVote();
    $("pg-new-pair").hidden = true;
    blindStatus(`A pair is drawn from ${chosen.length} candidates; their names stay hidden until you vote.`);
    promptEl.focus();
  }

  function afterBlindRound(outcomes) {
    if (voted || !outcomes.every((o) => o === "done")) return;
    $("pg-vote").hidden = false;
    document.querySelectorAll("[data-vote]").forEach((b) => { b.disabled = false; });
  }

  async function vote(winner) {
    document.querySelectorAll("[data-vote]").forEach((b) => { b.disabled = true; });
    const response = await fetch("/api/v1/playground/votes", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model_a: pair[0], model_b: pair[1], winner, prompt: lastPrompt }),
    });
    if (!response.ok) {
      $("pg-reveal").textContent = "The vote was not saved: " + (await errorMessage(response));
      document.querySelectorAll("[data-vote]").forEach((b) => { b.disabled = false; });
      return;
    }
    voted = true;
    panes.forEach((pane, k) => { pane.title.textContent = `${"AB"[k]} · ${pair[k]}`; pane.el.dataset.revealed = pair[k]; });
    const verdict = { a: "you preferred A", b: "you preferred B", tie: "a tie" }[winner];
    $("pg-reveal").textContent = `Saved (${verdict}). A was ${pair[0]}, B was ${pair[1]}.`;
    const again = $("pg-new-pair");
    again.hidden = false;
    again.focus();
    if (window.htmx) htmx.ajax("GET", "/playground/leaderboard", { target: "#leaderboard", swap: "outerHTML" });
  }

  if (blind) {
    $("pg-draw").addEventListener("click", drawPair);
    $("pg-new-pair").addEventListener("click", drawPair);
    document.querySelectorAll("[data-vote]").forEach((b) => b.addEventListener("click", () => vote(b.dataset.vote)));
    addPane(null);
    addPane(null);
    panes.forEach((pane, k) => { pane.title.textContent = "AB"[k]; });
  } else {
    $("pg-add").addEventListener("click", () => { const pane = addPane(null); if (pane) pane.select.focus(); });
    (defaults.length ? defaults : [null, null]).forEach((m) => addPane(m));
  }

  // ---- batch compare -------------------------------------------------------------------------
  const batchForm = $("batch-form");
  const sourceInputs = document.querySelectorAll("input[name=batch-source]");
  const showSource = () => {
    const job = document.querySelector("input[name=batch-source]:checked").value === "job";
    $("batch-prompts").hidden = job;
    $("batch-job").hidden = !job;
  };
  sourceInputs.forEach((input) => input.addEventListener("change", showSource));
  showSource();

  batchForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const errorEl = $("batch-error");
    errorEl.textContent = "";
    const models = Array.from(document.querySelectorAll("input[name=batch-model]:checked")).map((c) => c.value);
    const body = {
      models,
      limit: Math.round(number($("batch-limit"), 20)),
      max_tokens: Math.round(number($("batch-max-tokens"), 128)),
      temperature: number($("batch-temperature"), 0),
    };
    if (document.querySelector("input[name=batch-source]:checked").value === "job") body.source = { job_id: $("batch-job").value };
    else body.prompts = $("batch-prompts").value.split("\n").filter((line) => line.trim());
    const run = $("batch-run");
    run.disabled = true;
    try {
      const response = await fetch("/api/v1/playground/batches", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      if (!response.ok) { errorEl.textContent = await errorMessage(response); return; }
      const batch = await response.json();
      htmx.ajax("GET", `/playground/batches/${batch.id}`, { target: "#batch-result", swap: "outerHTML" });
    } catch (err) {
      errorEl.textContent = err.message || String(err);
    } finally {
      run.disabled = false;
    }
  });
})();
