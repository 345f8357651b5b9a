/* Quire's pages. No framework, no build step.

   The notebook page reads and writes through the REST API (session cookie + CSRF token) and
   follows its jobs through the notebook's server-sent events: every progress report of every
   job arrives as a `job` event carrying the job JSON, so nothing here polls. The lists are
   loaded once the event stream is open, so no event can fall between the two. */
"use strict";

(() => {
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
  const ACTIVE = new Set(["queued", "running", "retrying"]);

  // --- small helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key in node && typeof value !== "string") node[key] = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const fill = (pattern, id) => pattern.replace("{id}", encodeURIComponent(id));
  const csrfToken = () => document.querySelector('meta[name="csrf-token"]').content;

  class ApiError extends Error {
    constructor(status, body) {
      const error = (body && body.error) || {};
      super(error.message || `The request failed (HTTP ${status}).`);
      this.status = status;
      this.code = error.code || "";
      this.details = error.details;
    }

    describe() {
      const lines = [this.message];
      const details = this.details;
      if (Array.isArray(details)) {
        for (const item of details) {
          if (item && item.message) lines.push(`${item.file || item.url || ""}: ${item.message}`.replace(/^: /, ""));
        }
      } else if (details && typeof details === "object" && this.code === "VALIDATION_ERROR") {
        for (const [field, problems] of Object.entries(details)) {
          lines.push(`${field}: ${[].concat(problems).join(" ")}`);
        }
      }
      return lines.join(" ");
    }
  }

  async function api(url, { method = "GET", json, form } = {}) {
    const headers = { Accept: "application/json" };
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      body = form;
    }
    if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
    const response = await fetch(url, { method, headers, body, credentials: "same-origin" });
    if (response.status === 204) return null;
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  function ordinal(n) {
    const s = ["th", "st", "nd", "rd"];
    const v = n % 100;
    return n + (s[(v - 20) % 10] || s[v] || s[0]);
  }

  /* What a job is doing, in words: a queued job says why it waits. */
  function jobText(job) {
    if (!job) return "";
    if (job.status === "queued") {
      if (job.workers === 0) return `Waiting: no worker is running on the ${job.queue} queue`;
      const parts = [];
      if (job.queue_position) parts.push(`${ordinal(job.queue_position)} in line`);
      if (job.workers) parts.push(`${job.workers} worker${job.workers === 1 ? "" : "s"}`);
      return (job.message || "Waiting for a worker") + (parts.length ? ` (${parts.join(", ")})` : "");
    }
    if (job.status === "retrying") return `Attempt ${job.attempts} of ${job.max_attempts} failed; retrying`;
    return job.message || job.status;
  }

  function clock(seconds) {
    const whole = Math.round(seconds || 0);
    return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
  }

  // --- the notebook page

  function notebookPage() {
    const urls = JSON.parse(document.getElementById("page-urls").textContent);
    const notice = document.getElementById("notice");
    const live = document.getElementById("live");

    function say(message, kind = "error") {
      notice.textContent = message;
      notice.dataset.kind = kind;
      notice.hidden = !message;
    }

    function failed(error) {
      say(error instanceof ApiError ? error.describe() : `Something went wrong: ${error.message || error}`);
    }

    /* One kind of tracked thing (sources, reports, podcasts): a list of rows that follow their
       jobs. `status(data, job)` maps the row's API status and its job to what the row shows. */
    class Tracker {
      constructor({ type, list, listUrl, detailUrl, status, render, empty }) {
        Object.assign(this, { type, list, listUrl, detailUrl, status, render, empty });
        this.entries = new Map();
        this.early = new Map(); // job events that arrived before their row
        this.gone = new Set(); // deleted here: their jobs' last events are not news
        this.reloading = null;
      }

      upsert(data) {
        let entry = this.entries.get(data.id);
        if (!entry) {
          entry = { kind: this.type, data, job: null, node: el("li", { class: `item ${this.type}`, "data-id": data.id }) };
          this.entries.set(data.id, entry);
          this.place(entry);
        }
        entry.data = data;
        if (data.job) this.accept(entry, data.job);
        const early = this.early.get(data.id);
        let ended = false;
        if (early) {
          this.early.delete(data.id);
          ended = this.accept(entry, early) && TERMINAL.has(early.status);
          // The row came from this page's own request: the reload its early event asked for is moot.
          if (this.reloading && this.early.size === 0) {
            clearTimeout(this.reloading);
            this.reloading = null;
          }
        }
        this.draw(entry);
        // Its job ended before the row was here (a fast job, a slow answer to the upload): the
        // row's own status (ready, the failure's reason) is read now, as onJob does at the end.
        if (ended) this.refresh(data.id);
        return entry;
      }

      place(entry) {
        if (this.type === "source") this.list.append(entry.node);
        else this.list.prepend(entry.node); // reports and podcasts: newest first
      }

      /* A snapshot from the API may be older than an event already seen (or the reverse): a
         job that has ended never goes back to running. */
      accept(entry, job) {
        const current = entry.job;
        if (current && current.id === job.id && TERMINAL.has(current.status)) {
          return false;
        }
        entry.job = job;
        return true;
      }

      remove(id) {
        this.gone.add(id);
        const entry = this.entries.get(id);
        if (entry) {
          entry.node.remove();
          this.entries.delete(id);
        }
        this.updateEmpty();
      }

      draw(entry) {
        const view = this.status(entry.data, entry.job);
        entry.node.dataset.status = view.status;
        entry.node.replaceChildren(...this.render(entry, view));
        this.updateEmpty();
      }

      updateEmpty() {
        if (this.empty) this.empty.hidden = this.entries.size > 0;
      }

      async refresh(id) {
        try {
          this.upsert(await api(fill(this.detailUrl, id)));
        } catch (error) {
          if (error instanceof ApiError && error.status === 404) this.remove(id);
          else failed(error);
        }
      }

      async load() {
        const body = await api(this.listUrl);
        const seen = new Set();
        const items = body.results.slice();
        if (this.type !== "source") items.reverse(); // prepended one by one: oldest first
        for (const data of items) {
          seen.add(data.id);
          this.upsert(data);
        }
        for (const id of [...this.entries.keys()]) if (!seen.has(id)) this.remove(id);
        this.updateEmpty();
      }

      /* A job event for a row this page has not seen (added by another tab or an API client). */
      reloadSoon() {
        if (this.reloading) return;
        this.reloading = setTimeout(() => {
          this.reloading = null;
          this.load().catch(failed);
        }, 250);
      }

      onJob(job) {
        const id = job.subject.id;
        const entry = this.entries.get(id);
        if (this.gone.has(id)) return;
        if (!entry) {
          this.early.set(id, job);
          this.reloadSoon();
          return;
        }
        if (!this.accept(entry, job)) return;
        this.draw(entry);
        // The row's own status (ready, completed, the failure's reason) is read once its job ends.
        if (TERMINAL.has(job.status)) this.refresh(id);
      }
    }

    function progressBar(label, value, view) {
      return el("progress", {
        max: 100,
        value: view.status === "ready" || view.status === "completed" ? 100 : value,
        "aria-label": `Progress of ${label}`,
      });
    }

    function badge(status) {
      return el("span", { class: `status status-${status}`, text: status });
    }

    function cancelButton(label, job) {
      if (!job || !ACTIVE.has(job.status)) return null;
      return el("button", {
        type: "button",
        class: "cancel",
        text: "Cancel",
        "aria-label": `Cancel ${label}`,
        onclick: async (event) => {
          event.currentTarget.disabled = true;
          try {
            const cancelled = await api(fill(urls.jobCancel, job.id), { method: "POST" });
            trackers[cancelled.subject.type].onJob(cancelled);
          } catch (error) {
            failed(error);
          }
        },
      });
    }

    function deleteButton(label, tracker, id, url) {
      return el("button", {
        type: "button",
        class: "delete subtle",
        text: "Delete",
        "aria-label": `Delete ${label}`,
        onclick: async (event) => {
          event.currentTarget.disabled = true;
          try {
            await api(url, { method: "DELETE" });
            tracker.remove(id);
          } catch (error) {
            failed(error);
          }
        },
      });
    }

    // Sources: pending, processing, ready, failed, cancelled.
    function sourceStatus(data, job) {
      let status = data.status;
      if (status !== "ready" && job) {
        status =
          { queued: "pending", running: "processing", retrying: "processing", failed: "failed", cancelled: "cancelled" }[
            job.status
          ] || status;
      }
      return { status, percent: job ? job.progress : 0 };
    }

    function renderSource(entry, view) {
      const { data, job } = entry;
      const label = data.title || data.original_filename || data.url || "source";
      const meta = [data.content_type && data.content_type.toUpperCase(), data.page_count && `${data.page_count} p.`];
      if (view.status === "ready") meta.push(`${data.chunk_count} passage${data.chunk_count === 1 ? "" : "s"}`);
      const title =
        view.status === "ready"
          ? el("a", { class: "title", href: fill(urls.sourcePage, data.id), text: label })
          : el("span", { class: "title", text: label });
      const parts = [el("div", { class: "line" }, title, badge(view.status))];
      if (view.status === "ready") {
        parts.push(el("p", { class: "muted meta", text: meta.filter(Boolean).join(" · ") }));
      } else if (view.status === "failed" || view.status === "cancelled") {
        const reason = data.error || (job && job.error) || (view.status === "cancelled" ? "Processing was cancelled." : "");
        parts.push(el("p", { class: view.status === "failed" ? "error reason" : "muted reason", text: reason }));
      } else {
        parts.push(progressBar(label, view.percent, view));
        parts.push(el("p", { class: "message muted", text: jobText(job) }));
      }
      parts.push(
        el(
          "div",
          { class: "actions" },
          cancelButton(label, job),
          deleteButton(label, trackers.source, data.id, fill(urls.source, data.id)),
        ),
      );
      return parts;
    }

    // Reports and podcasts: pending, generating, completed, failed, cancelled.
    function generatedStatus(data, job) {
      let status = data.status;
      if (status !== "completed" && job) {
        status =
          { queued: "pending", running: "generating", retrying: "generating", failed: "failed", cancelled: "cancelled" }[
            job.status
          ] || status;
      }
      return { status, percent: job ? job.progress : 0 };
    }

    function renderGenerated(entry, view, label, links) {
      const { data, job } = entry;
      const parts = [el("div", { class: "line" }, el("span", { class: "title", text: label }), badge(view.status))];
      if (view.status === "completed") {
        parts.push(el("p", { class: "links" }, ...links));
      } else if (view.status === "failed" || view.status === "cancelled") {
        const reason = data.error || (job && job.error) || "";
        parts.push(el("p", { class: view.status === "failed" ? "error reason" : "muted reason", text: reason }));
      } else {
        parts.push(progressBar(label, view.percent, view));
        parts.push(el("p", { class: "message muted", text: jobText(job) }));
      }
      const detail = entry.kind === "podcast" ? urls.podcast : urls.report;
      parts.push(
        el(
          "div",
          { class: "actions" },
          cancelButton(label, job),
          deleteButton(label, trackers[entry.kind], data.id, fill(detail, data.id)),
        ),
      );
      return parts;
    }

    function renderReport(entry, view) {
      const { data } = entry;
      const label = data.title || (data.topic ? `Report: ${data.topic}` : "Report on the whole notebook");
      const download = fill(urls.reportDownload, data.id);
      return renderGenerated(entry, view, label, [
        el("a", { class: "button primary read", href: fill(urls.reportPage, data.id), text: "Read" }),
        el("a", { class: "button", href: `${download}?format=md`, download: "", text: "Markdown" }),
        el("a", { class: "button", href: `${download}?format=html`, download: "", text: "HTML" }),
        el("span", { class: "muted", text: `${data.word_count} words` }),
      ]);
    }

    function renderPodcast(entry, view) {
      const { data } = entry;
      const label = data.title || "Podcast";
      const links = [el("a", { class: "button primary listen", href: fill(urls.podcastPage, data.id), text: "Listen" })];
      if (data.audio) links.push(el("a", { class: "button", href: data.audio.mp3, download: "", text: "MP3" }));
      if (data.duration_seconds) links.push(el("span", { class: "muted", text: clock(data.duration_seconds) }));
      return renderGenerated(entry, view, label, links);
    }

    const trackers = {
      source: new Tracker({
        type: "source",
        list: document.getElementById("sources"),
        listUrl: urls.sources,
        detailUrl: urls.source,
        status: sourceStatus,
        render: renderSource,
        empty: document.getElementById("sources-empty"),
      }),
      report: new Tracker({
        type: "report",
        list: document.getElementById("reports"),
        listUrl: urls.reports,
        detailUrl: urls.report,
        status: generatedStatus,
        render: renderReport,
      }),
      podcast: new Tracker({
        type: "podcast",
        list: document.getElementById("podcasts"),
        listUrl: urls.podcasts,
        detailUrl: urls.podcast,
        status: generatedStatus,
        render: renderPodcast,
      }),
    };

    // --- overview

    const overview = {
      status: document.getElementById("overview-status"),
      summary: document.getElementById("overview-summary"),
      topics: document.getElementById("overview-topics"),
      questions: document.getElementById("overview-questions"),
    };

    function renderOverview(data) {
      const ready = data.status === "ready" && (data.summary || (data.key_topics || []).length);
      overview.status.textContent = ready
        ? ""
        : data.status === "pending"
          ? "The overview is being written…"
          : "The overview appears once sources are ready.";
      overview.status.hidden = !overview.status.textContent;
      overview.summary.textContent = ready ? data.summary : "";
      const topics = ready ? data.key_topics || [] : [];
      const questions = ready ? data.suggested_questions || [] : [];
      document.getElementById("topics-heading").hidden = !topics.length;
      document.getElementById("questions-heading").hidden = !questions.length;
      overview.topics.replaceChildren(
        ...topics.map((topic) =>
          el("li", {}, el("button", { type: "button", class: "chip", text: topic, onclick: () => runSearch(topic) })),
        ),
      );
      overview.questions.replaceChildren(
        ...questions.map((question) =>
          el(
            "li",
            {},
            el("button", { type: "button", class: "question link", text: question, onclick: () => askQuestion(question) }),
          ),
        ),
      );
    }

    async function loadOverview() {
      renderOverview(await api(urls.overview));
    }

    // A finished overview job has already sent its result as an `overview` event; it is only
    // read from the API when that event never came (the job failed or was cancelled).
    let overviewSent = false;
    function onOverviewJob(job) {
      if (ACTIVE.has(job.status)) {
        overviewSent = false;
        overview.status.textContent = "The overview is being updated…";
        overview.status.hidden = false;
      } else if (!overviewSent) {
        loadOverview().catch(failed);
      }
    }

    // --- search

    const searchForm = document.getElementById("search-form");
    const searchInput = document.getElementById("q");
    const searchStatus = document.getElementById("search-status");
    const results = document.getElementById("results");
    const STOP = new Set(
      "the and for are was were what which who whom whose with from that this these those into onto about how why when where does did has have had can could would should will shall not but its it's their there they them than then also".split(
        " ",
      ),
    );

    /* Query words as prefixes ("racing" finds "race"), longest first. */
    function terms(query) {
      const words = (query.toLowerCase().match(/[\p{L}\p{N}]{3,}/gu) || []).filter((w) => !STOP.has(w));
      const stems = words.map((w) => (w.length > 5 ? w.slice(0, w.length - 3) : w));
      return [...new Set(stems)].sort((a, b) => b.length - a.length);
    }

    function highlighted(text, stems) {
      if (!stems.length) return [text];
      const escaped = stems.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
      const pattern = new RegExp(`(?<![\\p{L}\\p{N}])((?:${escaped.join("|")})[\\p{L}\\p{N}]*)`, "giu");
      return text.split(pattern).map((part, i) => (i % 2 ? el("mark", { text: part }) : part));
    }

    // A recording's passage plays the original from the moment it is said: one shared <audio>
    // element (a video's sound plays too), the file served with Range so the player can seek.
    const player = el("audio", { id: "player", controls: "", preload: "none", hidden: "", "aria-label": "Recording player" });
    document.getElementById("results").after(player);
    function playButton(hit) {
      const button = el("button", { type: "button", class: "play", text: `▶ ${hit.time_label}` });
      button.setAttribute("aria-label", `Play ${hit.source_title || "the recording"} from ${hit.time_label}`);
      button.addEventListener("click", () => {
        const src = `${fill(urls.sourceFile, hit.source_id)}#t=${hit.time}`;
        if (player.dataset.source === hit.source_id) {
          player.currentTime = hit.time;
        } else {
          player.dataset.source = hit.source_id;
          player.src = src;
        }
        player.hidden = false;
        player.play().catch(() => {}); // a browser may refuse to autoplay; the controls remain
      });
      return button;
    }

    async function runSearch(query) {
      searchInput.value = query;
      searchStatus.textContent = "Searching…";
      results.replaceChildren();
      try {
        const mode = document.getElementById("search-mode").value;
        const body = await api(`${urls.search}?${new URLSearchParams({ q: query, k: "8", mode })}`);
        const stems = terms(query);
        searchStatus.textContent =
          (body.results.length
            ? `${body.results.length} passage${body.results.length === 1 ? "" : "s"} for “${query}”`
            : `Nothing found for “${query}”. Sources are searchable once they are ready.`) +
          (body.degraded ? ` (${body.degraded}: the other side of the search is unavailable)` : "");
        results.replaceChildren(
          ...body.results.map((hit) =>
            el(
              "li",
              { class: "hit" },
              el(
                "p",
                { class: "line" },
                el("a", {
                  class: "hit-link",
                  href: `${fill(urls.sourcePage, hit.source_id)}?chunk=${hit.chunk_id}#passage`,
                  text: hit.source_title || "Source",
                }),
                el("span", {
                  class: "muted",
                  text:
                    `${hit.page ? `page ${hit.page} · ` : ""}passage ${hit.position + 1}` +
                    `${hit.rank_keyword ? ` · words #${hit.rank_keyword}` : ""}` +
                    `${hit.rank_semantic ? ` · meaning #${hit.rank_semantic}` : ""}`,
                }),
              ),
              el("p", { class: "passage" }, ...highlighted(hit.snippet || hit.text, stems)),
              hit.time === null || hit.time === undefined ? "" : el("p", { class: "line" }, playButton(hit)),
            ),
          ),
        );
        searchForm.scrollIntoView({ block: "nearest" });
      } catch (error) {
        searchStatus.textContent = "";
        failed(error);
      }
    }

    searchForm.addEventListener("submit", (event) => {
      event.preventDefault();
      if (searchInput.value.trim()) runSearch(searchInput.value.trim());
    });

    // --- adding sources

    /* The last upload's batch: its coverage line ("18 of 20 ready, 2 failed: 2 EXTRACTION_FAILED",
       as GET /api/v1/batches/{id}/ words it), kept from the upload's answer and the job events
       (pushed, never polled), and a retry of its failed sources once it has ended. */
    const batchBox = document.getElementById("batch-coverage");
    const batchLine = document.getElementById("batch-line");
    const batchRetry = document.getElementById("batch-retry");
    let batch = null;

    function renderBatch() {
      if (!batch) return;
      const jobs = [...batch.jobs.values()];
      const count = (status) => jobs.filter((job) => job.status === status).length;
      const codes = new Map();
      for (const job of jobs) {
        if (job.status === "failed") codes.set(job.error_code || "UNKNOWN", (codes.get(job.error_code || "UNKNOWN") || 0) + 1);
      }
      const failedCount = count("failed");
      const active = count("queued") + count("running") + count("retrying");
      let line = `${count("succeeded")} of ${jobs.length} ready`;
      if (failedCount) {
        const grouped = [...codes.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
        line += `, ${failedCount} failed: ${grouped.map(([code, n]) => `${n} ${code}`).join(", ")}`;
      }
      if (active) line += `, ${active} still in progress`;
      if (count("cancelled")) line += `, ${count("cancelled")} cancelled`;
      batchLine.textContent = `Last upload: ${line}`;
      batchBox.hidden = false;
      batchRetry.hidden = active > 0 || failedCount === 0;
    }

    // A fast job may end before the upload's answer arrives: its events are kept a while.
    const seen = new Map();

    function followBatch(body) {
      if (!body.batch || !body.batch.jobs.length) return;
      const later = (job) => {
        const event = seen.get(job.id);
        return event && (["succeeded", "failed", "cancelled"].includes(event.status) || job.status === "queued")
          ? event
          : job;
      };
      batch = { id: body.batch.id, jobs: new Map(body.batch.jobs.map((job) => [job.id, later(job)])) };
      renderBatch();
    }

    function batchJob(job) {
      if (job.batch) {
        seen.set(job.id, job);
        if (seen.size > 500) seen.delete(seen.keys().next().value);
      }
      if (batch && job.batch === batch.id && batch.jobs.has(job.id)) {
        batch.jobs.set(job.id, job);
        renderBatch();
      }
    }

    batchRetry.addEventListener("click", async () => {
      if (!batch) return;
      batchRetry.disabled = true;
      try {
        const body = await api(fill(urls.batchRetry, batch.id), { method: "POST" });
        say(`Retrying ${body.retried.length} failed source${body.retried.length === 1 ? "" : "s"}.`, "info");
      } catch (error) {
        failed(error);
      } finally {
        batchRetry.disabled = false;
      }
    });

    async function addSources(request, busyText) {
      say(busyText, "info");
      try {
        const body = await api(urls.sources, { method: "POST", ...request });
        for (const source of body.sources) trackers.source.upsert(source);
        followBatch(body);
        const dupes = (body.duplicates || []).map((d) => d.name);
        say(dupes.length ? `Already in this notebook: ${dupes.join(", ")}.` : "", "info");
        return true;
      } catch (error) {
        failed(error);
        return false;
      }
    }

    function uploadFiles(fileList) {
      const files = [...fileList];
      if (!files.length) return;
      const form = new FormData();
      for (const file of files) form.append("files", file, file.name);
      addSources({ form }, `Uploading ${files.length} file${files.length === 1 ? "" : "s"}…`);
    }

    const fileInput = document.getElementById("files");
    const dropzone = document.getElementById("upload-form");
    fileInput.addEventListener("change", () => {
      uploadFiles(fileInput.files);
      fileInput.value = "";
    });
    dropzone.addEventListener("submit", (event) => event.preventDefault());
    for (const name of ["dragenter", "dragover"]) {
      dropzone.addEventListener(name, (event) => {
        event.preventDefault();
        dropzone.classList.add("dragging");
      });
    }
    for (const name of ["dragleave", "drop"]) {
      dropzone.addEventListener(name, () => dropzone.classList.remove("dragging"));
    }
    dropzone.addEventListener("drop", (event) => {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) uploadFiles(event.dataTransfer.files);
    });

    document.getElementById("urls-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const box = document.getElementById("urls");
      const list = box.value.split(/\s+/).filter(Boolean);
      if (list.length && (await addSources({ json: { urls: list } }, "Adding URLs…"))) box.value = "";
    });

    document.getElementById("text-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const title = document.getElementById("text-title");
      const text = document.getElementById("text-body");
      if (await addSources({ json: { text: text.value, title: title.value } }, "Adding text…")) {
        title.value = "";
        text.value = "";
      }
    });

    // --- reports and podcasts

    document.getElementById("report-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const report = await api(urls.reports, {
          method: "POST",
          json: {
            topic: document.getElementById("report-topic").value,
            length: document.getElementById("report-length").value,
            style: document.getElementById("report-style").value,
          },
        });
        trackers.report.upsert(report);
        say("", "info");
      } catch (error) {
        failed(error);
      }
    });

    document.getElementById("podcast-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const podcast = await api(urls.podcasts, {
          method: "POST",
          json: {
            title: document.getElementById("podcast-title").value,
            minutes: Number(document.getElementById("podcast-minutes").value),
            focus: document.getElementById("podcast-focus").value,
          },
        });
        trackers.podcast.upsert(podcast);
        say("", "info");
      } catch (error) {
        failed(error);
      }
    });

    // --- live events

    let loaded = false;
    // --- ask: the answer streams in as `answer` events; [n] chips show their quote

    const askForm = document.getElementById("ask-form");
    const askInput = document.getElementById("question");
    const followUp = document.getElementById("ask-follow-up");
    const answerBox = document.getElementById("answer");
    const answerText = document.getElementById("answer-text");
    const answerCitations = document.getElementById("answer-citations");
    const noteButton = document.getElementById("answer-note");
    const history = document.getElementById("history");
    let asking = null; // the question whose answer is shown
    let lastAnswered = null; // the conversation a follow-up continues

    function passageLink(citation) {
      return `${fill(urls.sourcePage, citation.source_id)}?chunk=${citation.chunk_id}#passage`;
    }

    function renderAnswer(text, citations) {
      const byNumber = new Map((citations || []).map((c) => [String(c.number), c]));
      answerText.replaceChildren(
        ...text.split(/(\[\d+\])/).map((part) => {
          const match = part.match(/^\[(\d+)\]$/);
          const citation = match && byNumber.get(match[1]);
          if (!citation) return part;
          const where = citation.page
            ? `, page ${citation.page}`
            : citation.time_label
              ? ` at ${citation.time_label}`
              : "";
          return el("a", {
            class: "chip citation",
            href: passageLink(citation),
            title: `${citation.source_title}${where}: “${citation.quote}”`,
            text: part,
          });
        }),
      );
      answerCitations.replaceChildren(
        ...(citations || []).map((c) =>
          el(
            "li",
            {},
            el("a", { href: passageLink(c), text: c.source_title || "Source" }),
            el("span", { class: "muted", text: `${c.page ? ` page ${c.page} ·` : c.time_label ? ` ${c.time_label} ·` : ""} “${c.quote}”` }),
            c.time === null || c.time === undefined ? "" : playButton(c),
          ),
        ),
      );
      answerBox.hidden = false;
    }

    function showQuestion(question) {
      asking = question.id;
      renderAnswer(question.answer || "Thinking…", question.citations);
      noteButton.hidden = !(question.status === "completed" && question.answered);
      noteButton.disabled = false;
      noteButton.textContent = question.note ? "Saved as a note" : "Save as note";
    }

    async function loadHistory() {
      const body = await api(`${urls.questions}?limit=20`);
      document.getElementById("history-heading").hidden = !body.results.length;
      history.replaceChildren(
        ...body.results.map((q) =>
          el(
            "li",
            {},
            el("button", { type: "button", class: "question link", text: q.question, onclick: () => showQuestion(q) }),
            el("span", { class: "muted", text: q.status === "completed" ? (q.answered ? "" : " · declined") : ` · ${q.status}` }),
          ),
        ),
      );
    }

    async function askQuestion(text) {
      askInput.value = text;
      try {
        const payload = { question: text };
        if (followUp.checked && lastAnswered) payload.conversation = lastAnswered;
        const question = await api(urls.questions, { method: "POST", json: payload });
        showQuestion(question);
        askForm.scrollIntoView({ block: "nearest" });
      } catch (error) {
        failed(error);
      }
    }

    function onAnswerEvent(data) {
      if (data.question !== asking) return;
      renderAnswer(data.text, data.citations);
      if (data.done) {
        if (data.answered) lastAnswered = data.question;
        noteButton.hidden = !data.answered;
        loadHistory().catch(failed);
      }
    }

    askForm.addEventListener("submit", (event) => {
      event.preventDefault();
      if (askInput.value.trim()) askQuestion(askInput.value.trim());
    });
    noteButton.addEventListener("click", async () => {
      noteButton.disabled = true;
      try {
        const note = await api(fill(urls.questionNote, asking), { method: "POST" });
        noteButton.textContent = "Saved as a note";
        trackers.source.upsert(note);
      } catch (error) {
        noteButton.disabled = false;
        failed(error);
      }
    });

    function loadAll() {
      if (loaded) return;
      loaded = true;
      Promise.all([trackers.source.load(), trackers.report.load(), trackers.podcast.load(), loadOverview(), loadHistory()])
        .then(() => document.body.setAttribute("data-loaded", ""))
        .catch(failed);
    }

    function setLive(state, text) {
      live.dataset.state = state;
      live.textContent = text;
    }

    if (window.EventSource) {
      // The browser reconnects by itself and sends Last-Event-ID, so it replays what it missed.
      const stream = new EventSource(urls.events);
      stream.addEventListener("open", () => {
        setLive("live", "Live");
        loadAll();
      });
      stream.addEventListener("error", () => {
        // CLOSED: the server refused the stream (signed out?); the browser will not retry.
        if (stream.readyState === EventSource.CLOSED) setLive("offline", "Live updates stopped; reload the page");
        else setLive("offline", "Reconnecting…");
      });
      stream.addEventListener("job", (event) => {
        const job = JSON.parse(event.data);
        batchJob(job);
        const type = job.subject && job.subject.type;
        if (trackers[type]) trackers[type].onJob(job);
        else if (job.kind === "notebooks.build_overview") onOverviewJob(job);
      });
      stream.addEventListener("answer", (event) => onAnswerEvent(JSON.parse(event.data)));
      stream.addEventListener("overview", (event) => {
        overviewSent = true;
        renderOverview({ status: "ready", ...JSON.parse(event.data) });
      });
      // Show the lists even if the stream cannot open (they then only change on reload).
      setTimeout(loadAll, 4000);
      window.addEventListener("pagehide", () => stream.close());
    } else {
      setLive("offline", "Live updates are not supported by this browser");
      loadAll();
    }
  }

  // --- the report page: a citation opens its passage

  function reportPage() {
    const data = document.getElementById("citations");
    const dialog = document.getElementById("citation");
    if (!data || !dialog) return;
    const citations = JSON.parse(data.textContent);
    let opener = null;

    function open(number, trigger) {
      const citation = citations[number];
      if (!citation) return false;
      document.getElementById("citation-number").textContent = `[${citation.number}]`;
      document.getElementById("citation-source").textContent = citation.source_title;
      document.getElementById("citation-page").textContent = citation.page ? `page ${citation.page}` : "";
      document.getElementById("citation-quote").textContent = citation.quote;
      document.getElementById("citation-link").href = citation.url;
      opener = trigger;
      dialog.showModal();
      return true;
    }

    document.getElementById("report").addEventListener("click", (event) => {
      const link = event.target.closest("sup.cite a");
      if (!link) return;
      const number = (link.getAttribute("href") || "").replace("#ref-", "");
      if (open(number, link)) event.preventDefault();
    });
    document.getElementById("citation-close").addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => opener && opener.focus());

    // Each reference also links straight to its passage.
    for (const [number, citation] of Object.entries(citations)) {
      const item = document.getElementById(`ref-${number}`);
      if (item) {
        item.append(" ", el("a", { class: "passage-link", href: citation.url, text: "Open passage" }));
      }
    }
  }

  // --- the podcast page: the script follows the audio, a turn's button seeks to it

  function podcastPage() {
    const player = document.getElementById("player");
    if (!player) return;
    const turns = [...document.querySelectorAll("#script .turn[data-start]")];
    document.getElementById("script").addEventListener("click", (event) => {
      const button = event.target.closest("button.seek");
      if (!button) return;
      player.currentTime = Number(button.dataset.start);
      const playing = player.play();
      if (playing && playing.catch) playing.catch(() => {}); // autoplay rules: the seek still counts
    });
    player.addEventListener("timeupdate", () => {
      let current = null;
      for (const turn of turns) if (Number(turn.dataset.start) <= player.currentTime + 0.05) current = turn;
      for (const turn of turns) {
        if (turn === current) turn.setAttribute("aria-current", "true");
        else turn.removeAttribute("aria-current");
      }
    });
  }

  const pages = { notebook: notebookPage, report: reportPage, podcast: podcastPage };
  const start = pages[document.body.dataset.page];
  if (start) start();
})();
