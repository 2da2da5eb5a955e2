/* churnlens web page for marketing (issue 18).
 *
 * Hand-written, no library: hash routes of one document (#/, #/at-risk,
 * #/customer/ID, #/model), every number read from the JSON API of this server with
 * fetch() (credentials: same-origin, so a sign-in session cookie is sent when the
 * server has one), charts drawn as SVG here. Nothing is computed here that the API
 * does not give: the page formats and draws.
 */
"use strict";

(function () {
  const app = document.getElementById("app");
  const statusLine = document.getElementById("status");
  const PAGE_SIZE = 50;
  const COHORT_ROWS = 24;
  const COHORT_MONTHS = 24;

  // --- formatting: thousands separators, percent, ISO dates --------------------------

  const fmtCache = new Map();
  function fixed(value, digits) {
    if (!fmtCache.has(digits)) {
      fmtCache.set(digits, new Intl.NumberFormat("en-US", {
        minimumFractionDigits: digits, maximumFractionDigits: digits }));
    }
    return fmtCache.get(digits).format(value);
  }
  const missing = (v) => v === null || v === undefined || Number.isNaN(v);
  const fmtInt = (v) => (missing(v) ? "n/a" : fixed(Math.round(v), 0));
  const fmtNum = (v, digits) => (missing(v) ? "n/a" : fixed(v, digits));
  const fmtPct = (v, digits = 1) => (missing(v) ? "n/a" : fixed(v, digits) + "%");
  const fmtRisk = (p) => (missing(p) ? "n/a" : fixed(p * 100, 1) + "%");
  const fmtMoney = (v) => (missing(v) ? "n/a" : fixed(v, 2));
  const DAY_MS = 86400000;
  const parseDay = (text) => new Date(text + "T00:00:00Z");
  const isoDay = (date) => date.toISOString().slice(0, 10);
  const nextDay = (text) => isoDay(new Date(parseDay(text).getTime() + DAY_MS));
  const interval = (low, high, fmt) =>
    (missing(low) || missing(high) ? "" : `${fmt(low)} to ${fmt(high)}`);

  // --- DOM helpers (text is always set as text, never parsed as HTML) ---------------

  function append(el, kids) {
    for (const kid of kids) {
      if (kid === null || kid === undefined || kid === false) continue;
      if (Array.isArray(kid)) append(el, kid);
      else el.append(kid instanceof Node ? kid : String(kid));
    }
    return el;
  }
  function setAttrs(el, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    return el;
  }
  const h = (tag, attrs, ...kids) => append(setAttrs(document.createElement(tag), attrs), kids);
  const SVG = "http://www.w3.org/2000/svg";
  const s = (tag, attrs, ...kids) =>
    append(setAttrs(document.createElementNS(SVG, tag), attrs), kids);

  function card(label, value, note, extra) {
    return h("div", Object.assign({ class: "card" }, extra || {}),
      h("div", { class: "label" }, label),
      h("div", { class: "value" }, value),
      note ? h("div", { class: "note" }, note) : null);
  }
  const panel = (title, ...kids) => h("section", { class: "panel" }, h("h2", {}, title), kids);
  const band = (name) => h("span", { class: `band ${name}` }, name);
  function table(headers, rows, attrs) {
    return h("div", { class: "table-wrap" },
      h("table", attrs || {},
        h("thead", {}, h("tr", {}, headers.map(([text, cls]) =>
          h("th", { class: cls || null, scope: "col" }, text)))),
        h("tbody", {}, rows)));
  }

  // --- the JSON API -----------------------------------------------------------------

  class SignInRequired extends Error {}

  async function api(path) {
    const response = await fetch(path, {
      credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401) {
      throw new SignInRequired("this server needs you to sign in to read its data");
    }
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const body = await response.json();
        detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      } catch (ignored) { /* not JSON: keep the status text */ }
      const error = new Error(`${path} answered ${response.status}: ${detail}`);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  // --- charts: SVG drawn from the API's numbers -------------------------------------

  function niceTicks(lo, hi, count) {
    if (!(hi > lo)) { lo -= 1; hi += 1; }
    const raw = (hi - lo) / Math.max(1, count);
    const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
    const ratio = raw / magnitude;
    const step = (ratio >= 7.5 ? 10 : ratio >= 3.5 ? 5 : ratio >= 1.5 ? 2 : 1) * magnitude;
    const first = Math.floor(lo / step) * step;
    const last = Math.ceil(hi / step) * step;
    const ticks = [];
    for (let v = first; v <= last + step * 1e-9; v += step) ticks.push(Number(v.toFixed(10)));
    return { ticks, lo: first, hi: last };
  }

  function dateTicks(lo, hi, count) {
    // first days of months, every 1, 2, 3, 6, 12 or 24 months; days for short spans
    const spanDays = (hi - lo) / DAY_MS;
    if (spanDays < 62) {
      // whole days, evenly spaced: a step of whole days, so no two labels crowd
      const step = Math.max(1, Math.ceil(spanDays / Math.max(1, count - 1)));
      const out = [];
      for (let t = Math.ceil(lo / DAY_MS) * DAY_MS; t <= hi; t += step * DAY_MS) {
        out.push(new Date(t));
      }
      return out;
    }
    const start = new Date(lo);
    const months = spanDays / 30.44;
    const step = [1, 2, 3, 6, 12, 24, 60].find((m) => months / m <= count) || 120;
    let year = start.getUTCFullYear();
    let month = start.getUTCMonth() + 1;
    month = Math.ceil(month / step) * step;
    const out = [];
    for (;;) {
      year += Math.floor(month / 12);
      month %= 12;
      const tick = Date.UTC(year, month, 1);
      if (tick > hi) break;
      if (tick >= lo) out.push(new Date(tick));
      month += step;
    }
    return out;
  }

  /* A chart over time. spec: {yLabel, xLabel, yFormat, lines: [{name, cls, color,
   * points: [{x: Date, y, title}]}], ranges: [{x, y, low, high, color, title, dx}],
   * bars: [{x, y, title}], xMax (a Date the x axis reaches), zeroBased, ariaLabel} */
  function timeChart(spec, width) {
    const narrow = width < 520;
    const height = narrow ? 250 : 300;
    const margin = { left: narrow ? 50 : 62, right: 14, top: 12, bottom: 50 };
    const plotW = width - margin.left - margin.right;
    const plotH = height - margin.top - margin.bottom;
    const xs = [];
    const ys = [];
    for (const line of spec.lines || []) {
      for (const p of line.points) { xs.push(p.x.getTime()); if (!missing(p.y)) ys.push(p.y); }
    }
    for (const r of spec.ranges || []) {
      xs.push(r.x.getTime());
      for (const v of [r.y, r.low, r.high]) if (!missing(v)) ys.push(v);
    }
    for (const b of spec.bars || []) { xs.push(b.x.getTime()); ys.push(b.y); }
    if (spec.xMax) xs.push(spec.xMax.getTime());  // e.g. the as-of date: silence shows
    if (spec.zeroBased) ys.push(0);
    let xlo = Math.min(...xs);
    let xhi = Math.max(...xs);
    if (!(xhi > xlo)) { xlo -= 15 * DAY_MS; xhi += 15 * DAY_MS; }
    const pad = (xhi - xlo) * 0.04;
    xlo -= pad; xhi += pad;
    const yt = niceTicks(Math.min(...ys), Math.max(...ys), narrow ? 4 : 6);
    const X = (t) => margin.left + ((t - xlo) / (xhi - xlo)) * plotW;
    const Y = (v) => margin.top + (1 - (v - yt.lo) / (yt.hi - yt.lo)) * plotH;
    const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height,
      role: "img", "aria-label": spec.ariaLabel || spec.yLabel });
    const grid = s("g", { class: "grid" });
    const axes = s("g", { class: "axis" });
    for (const v of yt.ticks) {
      grid.append(s("line", { x1: margin.left, x2: margin.left + plotW, y1: Y(v), y2: Y(v) }));
      axes.append(s("text", { x: margin.left - 6, y: Y(v) + 4, "text-anchor": "end" },
        spec.yFormat(v)));
    }
    axes.append(s("line", { x1: margin.left, x2: margin.left, y1: margin.top,
      y2: margin.top + plotH }));
    axes.append(s("line", { x1: margin.left, x2: margin.left + plotW, y1: margin.top + plotH,
      y2: margin.top + plotH }));
    for (const tick of dateTicks(xlo, xhi, Math.max(2, Math.floor(plotW / 110)))) {
      const x = X(tick.getTime());
      axes.append(s("line", { x1: x, x2: x, y1: margin.top + plotH, y2: margin.top + plotH + 5 }));
      // a label near the right edge ends at its tick instead of being cut off
      const anchor = x > width - 40 ? "end" : "middle";
      axes.append(s("text", { x, y: margin.top + plotH + 18, "text-anchor": anchor },
        isoDay(tick)));
    }
    svg.append(grid, axes);
    svg.append(s("text", { class: "axis-label", x: margin.left + plotW / 2, y: height - 8,
      "text-anchor": "middle" }, spec.xLabel));
    svg.append(s("text", { class: "axis-label", x: 0, y: 0, "text-anchor": "middle",
      transform: `translate(13 ${margin.top + plotH / 2}) rotate(-90)` }, spec.yLabel));
    if (spec.bars) {
      const days = Math.max(1, (xhi - xlo) / DAY_MS);
      const barW = Math.max(2, Math.min(14, (plotW / days) * 3));
      const zero = Y(Math.max(yt.lo, Math.min(0, yt.hi)));
      for (const b of spec.bars) {
        const top = Y(b.y);
        svg.append(s("rect", { class: "bar", x: X(b.x.getTime()) - barW / 2,
          y: Math.min(top, zero), width: barW, height: Math.max(1, Math.abs(zero - top)),
          fill: b.y < 0 ? "#b2182b" : "#1f77b4" }, s("title", {}, b.title)));
      }
    }
    for (const line of spec.lines || []) {
      let d = "";
      let pen = "M";
      for (const p of line.points) {
        if (missing(p.y)) { pen = "M"; continue; }
        d += `${pen}${X(p.x.getTime()).toFixed(1)},${Y(p.y).toFixed(1)} `;
        pen = "L";
      }
      svg.append(s("path", { d, fill: "none", stroke: line.color, "stroke-width": 2,
        class: `line ${line.cls || ""}` }));
      for (const p of line.points) {
        if (missing(p.y)) continue;
        svg.append(s("circle", { cx: X(p.x.getTime()), cy: Y(p.y), r: 3.2, fill: line.color,
          class: `point ${line.cls || ""}` }, s("title", {}, p.title)));
      }
    }
    for (const r of spec.ranges || []) {
      const x = X(r.x.getTime()) + (r.dx || 0);
      const g = s("g", { class: `prediction ${r.cls || ""}` }, s("title", {}, r.title));
      if (!missing(r.low) && !missing(r.high)) {
        g.append(s("line", { x1: x, x2: x, y1: Y(r.low), y2: Y(r.high), stroke: r.color,
          "stroke-width": 1.5 }));
        for (const v of [r.low, r.high]) {
          g.append(s("line", { x1: x - 4, x2: x + 4, y1: Y(v), y2: Y(v), stroke: r.color,
            "stroke-width": 1.5 }));
        }
      }
      if (!missing(r.y)) {
        g.append(s("circle", { cx: x, cy: Y(r.y), r: 4.5, fill: "#fff", stroke: r.color,
          "stroke-width": 2 }));
      }
      svg.append(g);
    }
    return svg;
  }

  // A chart's container: drawn at its own width once on the page, again on resize.
  function chartBox(spec) {
    const box = h("div", { class: "chart" });
    box.chartSpec = spec;
    return box;
  }
  function drawCharts() {
    for (const box of app.querySelectorAll(".chart")) {
      if (!box.chartSpec) continue;
      const width = Math.max(280, Math.floor(box.clientWidth || 600));
      if (box.drawnWidth === width) continue;
      box.drawnWidth = width;
      box.replaceChildren(timeChart(box.chartSpec, width));
    }
  }
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(drawCharts, 120);
  });

  // --- overview ---------------------------------------------------------------------

  function periodText(start, end) {
    return `${nextDay(start)} to ${end}`;
  }

  async function overview() {
    const [series, outlook, backtest, cohorts, monitoring] = await Promise.all([
      api("/retention/series"), api("/retention/outlook"), api("/retention/backtest"),
      api("/retention/cohorts"), monitoringReport()]);
    const complete = series.periods.filter((p) => p.complete);
    const last = complete[complete.length - 1];
    const rates = last ? await api(`/retention?start=${last.start}&end=${last.end}`) : null;
    const view = [h("h1", {}, "Retention at a glance")];

    if (rates) {
      const metric = (name, label, value, note) => card(label, value, note,
        { "data-metric": name, "data-value": missing(rates[name]) ? "" : rates[name] });
      view.push(panel("Last complete period",
        h("p", { class: "sub", id: "headline-period", "data-start": rates.start,
          "data-end": rates.end },
          `${periodText(rates.start, rates.end)} (${fmtInt(rates.window_days)} days; ` +
          `a customer is active when they bought in the last ${fmtInt(rates.window_days)} days)`),
        h("div", { class: "cards" },
          metric("crr", "Customer retention rate (CRR)", fmtPct(rates.crr),
            "(active at end − new) ÷ active at start"),
          metric("cohort_retention", "Cohort retention", fmtPct(rates.cohort_retention),
            "share of the start's active customers still active"),
          metric("churn_rate", "Churn rate", fmtPct(rates.churn_rate),
            "100% − cohort retention"),
          metric("repeat_rate", "Repeat rate", fmtPct(rates.repeat_rate),
            "customers acquired before who bought again"),
          metric("E", "Customers active", fmtInt(rates.E), `at ${rates.end}`),
          metric("N", "New customers", fmtInt(rates.N), "first purchase in the period"))));
    } else {
      view.push(panel("Last complete period", h("p", { class: "notice" },
        "The data do not yet cover a whole period of the model's horizon and its activity " +
        "window: no rates to show.")));
    }

    const pc = outlook.predicted_cohort_retention;
    const pr = outlook.predicted_crr;
    view.push(panel(`Outlook: the next ${fmtInt(outlook.horizon_days)} days`,
      h("p", { class: "sub" }, `${periodText(outlook.period_start, outlook.period_end)}, ` +
        `predicted by the model for the ${fmtInt(outlook.active_customers)} active customers ` +
        `of ${outlook.as_of}`),
      h("div", { class: "cards" },
        card("Predicted cohort retention", fmtPct(pc.value),
          `95% interval ${interval(pc.low, pc.high, fmtPct)}`,
          { "data-metric": "predicted_cohort_retention" }),
        card("Predicted CRR", fmtPct(pr.value), `95% interval ${interval(pr.low, pr.high, fmtPct)}`,
          { "data-metric": "predicted_crr" }),
        card("Expected customers lost", fmtInt(outlook.expected_customers_lost),
          `of ${fmtInt(outlook.active_customers)} active`),
        card("Revenue at risk", fmtMoney(outlook.revenue_at_risk),
          "churn risk × expected spend in the horizon (currency of the data)"),
        card("Last period, actual", fmtPct(outlook.last_actual.cohort_retention),
          `cohort retention; CRR ${fmtPct(outlook.last_actual.crr)}`)),
      outlook.interval_covers ? h("p", { class: "sub" }, `Intervals: ${outlook.interval_covers}`)
        : null,
      outlook.model_warnings.length
        ? h("ul", { class: "warnings" }, outlook.model_warnings.map((w) => h("li", {}, w)))
        : null));

    const ledger = monitoring.report ? fromLedger(monitoring.report, outlook) : [];
    view.push(ledger.length
      ? retentionChartPanel(series, complete, ledger, "ledger", outlook)
      : retentionChartPanel(series, complete, fromBacktest(backtest), "backtest", outlook));
    view.push(cohortPanel(cohorts));
    return view;
  }

  // Past predictions, one shape for both sources: the prediction ledger (GET /monitoring:
  // every recorded scoring, its interval, and what happened once its horizon closed) or,
  // without a ledger, the model's backtest (GET /retention/backtest).
  function fromLedger(report, outlook) {
    return report.entries
      .filter((e) => e.predicted && !missing(e.predicted.cohort_retention))
      // the served scoring's own entry is the outlook, drawn once
      .filter((e) => !(e.status === "open" && e.as_of === outlook.as_of &&
        e.period_end === outlook.period_end))
      .map((e) => {
        const actual = {};
        for (const r of ((e.realized || {}).rates || [])) actual[r.rate] = r.actual;
        const p = e.predicted;
        return { as_of: e.as_of, end: e.period_end, status: e.status,
          cohort: [p.cohort_retention, p.cohort_retention_low, p.cohort_retention_high,
            actual.cohort_retention],
          crr: [p.crr, p.crr_low, p.crr_high, actual.crr] };
      });
  }
  function fromBacktest(backtest) {
    return backtest
      .map((run) => ({ run, m: (run.models || {}).churnlens }))
      .filter((x) => x.m && !missing(x.m.predicted_cohort_retention))
      .map(({ run, m }) => ({ as_of: run.as_of, status: "closed",
        end: isoDay(new Date(parseDay(run.as_of).getTime() + run.horizon_days * DAY_MS)),
        cohort: [m.predicted_cohort_retention, m.predicted_cohort_retention_low,
          m.predicted_cohort_retention_high, m.actual_cohort_retention],
        crr: [m.predicted_crr, m.predicted_crr_low, m.predicted_crr_high, m.actual_crr] }));
  }

  function retentionChartPanel(series, complete, past, source, outlook) {
    const ranges = [];
    const range = (x, [y, low, high, actual], name, cls, color, dx, when) => ({
      x, y, low, high, color, dx, cls,
      title: `${name} predicted ${when}: ${fmtPct(y)} (95%: ${interval(low, high, fmtPct)})` +
        (missing(actual) ? "" : `; actual ${fmtPct(actual)}`) });
    for (const p of past) {
      const when = `on ${p.as_of} for ${nextDay(p.as_of)} to ${p.end}`;
      ranges.push(range(parseDay(p.end), p.crr, "CRR", `crr ${source}`, "#1f77b4", -5, when));
      ranges.push(range(parseDay(p.end), p.cohort, "cohort retention", `cohort ${source}`,
        "#d95f02", 5, when));
    }
    const pc = outlook.predicted_cohort_retention;
    const pr = outlook.predicted_crr;
    const coming = `for the coming ${outlook.horizon_days} days`;
    ranges.push(range(parseDay(outlook.period_end), [pr.value, pr.low, pr.high, null], "CRR",
      "crr outlook", "#1f77b4", -5, coming));
    ranges.push(range(parseDay(outlook.period_end), [pc.value, pc.low, pc.high, null],
      "cohort retention", "cohort outlook", "#d95f02", 5, coming));
    const point = (name) => (p) => ({ x: parseDay(p.end), y: p[name],
      title: `${periodText(p.start, p.end)}: ${name === "crr" ? "CRR" : "cohort retention"} ` +
        `${fmtPct(p[name])}` });
    const spec = {
      yLabel: "rate (%)",
      xLabel: `end of each ${series.every} period (date)`,
      yFormat: (v) => `${fixed(v, 0)}%`,
      ariaLabel: "CRR and cohort retention per period, with the model's predictions",
      lines: [
        { name: "CRR", cls: "crr", color: "#1f77b4", points: complete.map(point("crr")) },
        { name: "cohort retention", cls: "cohort", color: "#d95f02",
          points: complete.map(point("cohort_retention")) }],
      ranges,
    };
    const covered = (pred) => (missing(pred[3]) || missing(pred[1]) ? "" :
      pred[1] <= pred[3] && pred[3] <= pred[2] ? "yes" : "no");
    const rows = past.map((p) => h("tr", { "data-as-of": p.as_of },
      h("td", {}, p.as_of),
      h("td", {}, `${nextDay(p.as_of)} to ${p.end}`),
      h("td", { class: "num" }, fmtPct(p.cohort[0])),
      h("td", { class: "num" }, interval(p.cohort[1], p.cohort[2], fmtPct)),
      h("td", { class: "num" }, p.status === "open" ? "open" : fmtPct(p.cohort[3])),
      h("td", { class: "num" }, covered(p.cohort)),
      h("td", { class: "num" }, fmtPct(p.crr[0])),
      h("td", { class: "num" }, interval(p.crr[1], p.crr[2], fmtPct)),
      h("td", { class: "num" }, p.status === "open" ? "open" : fmtPct(p.crr[3])),
      h("td", { class: "num" }, covered(p.crr))));
    const from = source === "ledger"
      ? "recorded in the prediction ledger when each scoring was made"
      : "from the model's backtest (scored at the period's start with the history known " +
        "then; no prediction ledger on this server yet)";
    return panel("Retention over time, and what the model predicted",
      h("p", { class: "sub", id: "prediction-source", "data-source": source },
        `Lines: actual rates of every complete ${series.every} period. Circles with bars: ` +
        `the model's predictions and their 95% intervals, ${from}, and for the coming period.`),
      h("div", { class: "legend" },
        h("span", {}, h("span", { class: "swatch crr" }), "CRR, actual"),
        h("span", {}, h("span", { class: "swatch cohort" }), "cohort retention, actual"),
        h("span", {}, h("span", { class: "swatch pred" }), "predicted, with 95% interval")),
      chartBox(spec),
      rows.length ? h("h2", {}, `Predicted vs actual, past predictions (${source})`) : null,
      rows.length ? table([["scored on"], ["period"], ["cohort retention, predicted", "num"],
        ["95% interval", "num"], ["actual", "num"], ["inside", "num"],
        ["CRR, predicted", "num"], ["95% interval", "num"], ["actual", "num"],
        ["inside", "num"]], rows, { id: "predicted-vs-actual" }) : null);
  }

  function heat(value) {
    const light = 97 - (Math.max(0, Math.min(100, value)) / 100) * 67;
    return `hsl(208, 62%, ${light.toFixed(0)}%)`;
  }

  function cohortPanel(cohorts) {
    const shown = cohorts.cohorts.slice(-COHORT_ROWS);
    const months = Math.min(COHORT_MONTHS,
      Math.max(1, ...shown.map((c) => c.months.length)));
    const head = [["acquisition month"], ["customers", "num"]];
    for (let k = 0; k < months; k += 1) head.push([`m${k}`, "num"]);
    const rows = shown.map((c) => h("tr", {},
      h("th", { scope: "row" }, c.cohort),
      h("td", { class: "num" }, fmtInt(c.cohort_size)),
      Array.from({ length: months }, (_, k) => {
        const v = c.months[k];
        if (missing(v)) return h("td", { class: "empty" }, "");
        const cell = h("td", { title: `${c.cohort}, month ${k}: ${fmtPct(v)} of the cohort bought` },
          fixed(v, 0));
        cell.style.backgroundColor = heat(v);
        cell.style.color = v > 55 ? "#fff" : "#1b1f24";
        return cell;
      })));
    return panel("Acquisition cohorts",
      h("p", { class: "sub" }, "Each row: the customers whose first purchase was in that " +
        "month. Cell mk: percent of the cohort who bought in the k-th month after it " +
        `(m0 = 100%). Empty: that month has not ended yet. ` +
        (cohorts.cohorts.length > shown.length
          ? `The last ${shown.length} of ${cohorts.cohorts.length} cohorts are shown.` : "")),
      h("div", { class: "legend", "aria-hidden": "true" },
        h("span", {}, "0% ", [0, 20, 40, 60, 80, 100].map((v) => {
          const swatch = h("span", { class: "swatch scale", title: `${v}%` });
          swatch.style.backgroundColor = heat(v);
          return swatch;
        }), " 100% of the cohort buying in that month")),
      table(head, rows, { class: "heatmap", id: "cohorts" }));
  }

  // --- at-risk list -----------------------------------------------------------------

  // The base's counts by band and segment change only when the server reloads its data:
  // asked once per served state (GET /health's loaded_at tells a reload).
  let facetsCache = null;
  let servedStamp = null;
  async function baseFacets() {
    if (facetsCache === null) facetsCache = api("/at-risk/facets");
    try {
      return await facetsCache;
    } catch (error) {
      facetsCache = null;
      throw error;
    }
  }

  const LIST_PARAMS = ["list", "band", "segment", "min_risk", "min_value_at_risk", "q", "sort",
    "cost_per_contact", "save_rate", "margin"];

  // attribute filters (served with a customer table): repeated attribute=name:value
  function listQuery(params, extra) {
    const query = new URLSearchParams();
    for (const key of LIST_PARAMS) {
      if (params.get(key)) query.set(key, params.get(key));
    }
    for (const filter of params.getAll("attribute")) query.append("attribute", filter);
    for (const [key, value] of Object.entries(extra || {})) query.set(key, value);
    return query.toString();
  }
  // the value an attribute is filtered on ("" for none), from attribute=name:value
  function attributeFilter(params, name) {
    const found = params.getAll("attribute").find((f) => f.startsWith(`${name}:`));
    return found === undefined ? "" : found.slice(name.length + 1);
  }

  async function atRisk(query) {
    const params = new URLSearchParams(query || "");
    const offset = Math.max(0, parseInt(params.get("offset") || "0", 10) || 0);
    const [facets, page] = await Promise.all([
      baseFacets(),
      api(`/at-risk?${listQuery(params, { limit: PAGE_SIZE, offset })}`)]);
    const profit = page.profit || null;  // the terms when the list is sized by profit
    const go = (changes) => {
      const next = new URLSearchParams(listQuery(params));
      for (const [key, value] of Object.entries(changes)) {
        if (value === "" || value === null || value === undefined) next.delete(key);
        else next.set(key, value);
      }
      location.hash = `#/at-risk?${next.toString()}`;
    };
    // one select per categorical attribute (GET /at-risk/facets' attributes): its value
    // replaces that attribute's filter, the others stay
    const filterOn = (name, value) => {
      const next = new URLSearchParams(listQuery(params));
      const others = next.getAll("attribute").filter((f) => !f.startsWith(`${name}:`));
      next.delete("attribute");
      for (const filter of others) next.append("attribute", filter);
      if (value !== "") next.append("attribute", `${name}:${value}`);
      next.delete("offset");
      location.hash = `#/at-risk?${next.toString()}`;
    };
    const attributes = Object.entries(facets.attributes || {});
    const attributeColumns = facets.attribute_columns || [];
    const attributeSelects = attributes.map(([name, values]) => h("label", {},
      `Attribute: ${name}`,
      h("select", { name: `attribute-${name}`, "data-attribute": name,
        onchange: (e) => filterOn(name, e.target.value) },
      [["", `any ${name}`], ...Object.entries(values).map(([value, n]) =>
        [value, `${value} (${fmtInt(n)})`])].map(([value, text]) => h("option", {
        value, selected: attributeFilter(params, name) === value }, text)))));
    const select = (name, label, options) => h("label", {}, label,
      h("select", { name, onchange: (e) => go({ [name]: e.target.value, offset: "" }) },
        options.map(([value, text]) => h("option", {
          value, selected: (params.get(name) || "") === value }, text))));
    const percent = params.get("min_risk") ? String(Math.round(
      parseFloat(params.get("min_risk")) * 1000) / 10) : "";
    const filters = h("form", { class: "filters", id: "filters", onsubmit: (e) => {
      e.preventDefault();
      const form = e.target;
      const risk = form.elements.min_risk_percent.value;
      const cost = form.elements.cost_per_contact.value.trim();
      const changes = { q: form.elements.q.value.trim(),
        min_value_at_risk: form.elements.min_value_at_risk.value,
        min_risk: risk === "" ? "" : String(Math.min(100, Math.max(0, parseFloat(risk))) / 100),
        cost_per_contact: cost, save_rate: form.elements.save_rate.value.trim(),
        margin: form.elements.margin.value.trim(), offset: "" };
      // the expected-profit order exists only for a list sized by profit
      if (cost === "" && params.get("sort") === "expected_profit") changes.sort = "";
      go(changes);
    } },
      select("list", "List", [["", "whole base, riskiest first"],
        ["campaign", "campaign: worth a call"], ["win-back", "win-back: already gone"]]),
      select("band", "Risk band", [["", `all bands (${fmtInt(facets.total)})`],
        ...["high", "medium", "low"].map((b) => [b, `${b} (${fmtInt(facets.bands[b] || 0)})`])]),
      select("segment", "Segment", [["", "all segments"],
        ...Object.entries(facets.segments).map(([name, n]) => [name, `${name} (${fmtInt(n)})`])]),
      attributeSelects,
      select("sort", "Sort by", [["", "default"], ["churn_risk", "churn risk"],
        ["value_at_risk", "value at risk"], ...(profit ? [["expected_profit", "expected profit"]]
          : [])]),
      h("label", {}, "Minimum risk (%)", h("input", { name: "min_risk_percent", type: "number",
        min: 0, max: 100, step: "any", value: percent, inputmode: "decimal" })),
      h("label", {}, "Minimum value at risk", h("input", { name: "min_value_at_risk",
        type: "number", min: 0, step: "any", value: params.get("min_value_at_risk") || "",
        inputmode: "decimal" })),
      h("label", {}, "Customer id contains", h("input", { name: "q", type: "search",
        value: params.get("q") || "", autocomplete: "off" })),
      // a list sized by profit (GET /at-risk cost_per_contact, save_rate, margin): the
      // server keeps the customers worth contacting at that cost and says how many
      h("label", {}, "Cost per contact", h("input", { name: "cost_per_contact", type: "number",
        min: 0, step: "any", value: params.get("cost_per_contact") || "", placeholder: "none",
        inputmode: "decimal" })),
      h("label", {}, "Save rate (0–1)", h("input", { name: "save_rate", type: "number",
        min: 0, max: 1, step: "any", value: params.get("save_rate") || "",
        placeholder: "e.g. 0.2", inputmode: "decimal" })),
      h("label", {}, "Margin (0–1)", h("input", { name: "margin", type: "number", min: 0,
        max: 1, step: "any", value: params.get("margin") || "", placeholder: "1",
        inputmode: "decimal" })),
      h("button", { type: "submit" }, "Apply"));
    const first = page.total ? offset + 1 : 0;
    const lastRow = Math.min(offset + page.items.length, page.total);
    const csv = `/at-risk?${listQuery(params, { format: "csv" })}`;
    // an optional random control group, drawn by the server in the download (as
    // churnlens at-risk --control-fraction): the link follows the two inputs
    const download = h("a", { class: "button", id: "download", href: csv,
      download: "at-risk.csv" }, "Download this list (CSV)");
    const control = h("input", { name: "control_percent", type: "number", min: 0, max: 99,
      step: "any", placeholder: "none", inputmode: "decimal", "aria-label":
      "control group, percent of each risk band" });
    const seed = h("input", { name: "seed", type: "number", min: 0, step: 1, value: 0,
      inputmode: "numeric", "aria-label": "seed of the control group draw" });
    const follow = () => {
      const percent = parseFloat(control.value);
      const extra = { format: "csv" };
      if (percent > 0 && percent < 100) {
        extra.control_fraction = String(percent / 100);
        extra.seed = String(Math.max(0, parseInt(seed.value || "0", 10) || 0));
      }
      download.setAttribute("href", `/at-risk?${listQuery(params, extra)}`);
    };
    control.addEventListener("input", follow);
    seed.addEventListener("input", follow);
    const rows = page.items.map((item) => h("tr", { "data-customer": item.customer_id },
      h("td", {}, h("a", { href: `#/customer/${encodeURIComponent(item.customer_id)}` },
        String(item.customer_id))),
      h("td", { class: "num", "data-risk": item.churn_risk }, fmtRisk(item.churn_risk)),
      h("td", {}, band(item.risk_band)),
      h("td", {}, item.segment),
      h("td", { class: "num" }, fmtMoney(item.value_at_risk)),
      profit ? h("td", { class: "num", "data-profit": item.expected_profit },
        fmtMoney(item.expected_profit)) : null,
      h("td", { class: "num" }, fmtInt(item.recency_days)),
      h("td", { class: "num" }, fmtInt(item.frequency)),
      attributeColumns.map((column) => h("td", { "data-attribute-column": column },
        missing(item[column]) ? "" : String(item[column]))),
      h("td", { class: "wrap" }, item.reason_1 || "")));
    return [
      h("h1", {}, "At-risk customers"),
      h("p", { class: "sub" }, "The whole scored base, filtered and sorted on the server. " +
        "Churn risk: probability of no purchase in the model's horizon. Value at risk: " +
        "churn risk × expected spend in the horizon (currency of the data)."),
      h("section", { class: "panel" }, filters,
        h("div", { class: "bar" },
          h("span", { class: "count", id: "count", "data-total": page.total },
            `${fmtInt(page.total)} customers`),
          profit ? h("span", { class: "count", id: "profit-total",
            "data-value": page.expected_profit_total },
          `expected total profit ${fmtMoney(page.expected_profit_total)}`) : null,
          h("span", { class: "muted", id: "rows-shown" },
            page.total ? `rows ${fmtInt(first)}–${fmtInt(lastRow)}` : "no customer matches"),
          download,
          h("label", { class: "muted inline" }, "control group % ", control),
          h("label", { class: "muted inline" }, "seed ", seed)),
        profit ? h("p", { class: "sub", id: "profit-rule" }, "Sized by profit: the customers " +
          `whose expected profit of a contact, churn risk × ${profit.save_rate} (save rate) × ` +
          `expected value (spend if they stay) × ${profit.margin} (margin) − ${profit.cost_per_contact} (cost), ` +
          "is positive; the total is the expected profit of contacting them all.") : null,
        h("p", { class: "sub" }, "With a control group, the download marks a random share of " +
          "each risk band as control (column group): contact only the treatment rows, then " +
          "read the campaign out with churnlens campaign."),
        table([["customer"], ["churn risk", "num"], ["band"], ["segment"],
          ["value at risk", "num"], profit ? ["expected profit", "num"] : null,
          ["days since last purchase", "num"],
          ["purchase days", "num"], ...attributeColumns.map((column) => [column]),
          ["main reason"]].filter(Boolean), rows,
        { id: "at-risk-table" }),
        h("div", { class: "bar" },
          h("button", { type: "button", class: "plain", id: "previous", disabled: offset === 0,
            onclick: () => go({ offset: Math.max(0, offset - PAGE_SIZE) || "" }) }, "← Previous"),
          h("button", { type: "button", class: "plain", id: "next",
            disabled: offset + PAGE_SIZE >= page.total,
            onclick: () => go({ offset: offset + PAGE_SIZE }) }, "Next →"))),
    ];
  }

  // --- customer -----------------------------------------------------------------------

  function customerSearch(value) {
    return h("form", { class: "bar", onsubmit: (e) => {
      e.preventDefault();
      const id = e.target.elements.customer.value.trim();
      if (id) location.hash = `#/customer/${encodeURIComponent(id)}`;
    } },
      h("label", { class: "muted" }, "Customer id ",
        h("input", { name: "customer", value: value || "", autocomplete: "off" })),
      h("button", { type: "submit" }, "Show"));
  }

  async function customer(rawId) {
    const id = rawId ? decodeURIComponent(rawId) : "";
    if (!id) {
      return [h("h1", {}, "Customer"), customerSearch(""),
        h("p", { class: "muted" }, "Pick a customer in the at-risk list, or type an id.")];
    }
    const path = `/customers/${encodeURIComponent(id)}`;
    let stored;
    try {
      stored = await api(path);
    } catch (error) {
      if (error.status === 404) {
        return [h("h1", {}, "Customer"), customerSearch(id),
          h("p", { class: "error" }, `Customer ${id} is not in the scored base.`)];
      }
      throw error;
    }
    const history = await api(`${path}/purchases`);
    const c = stored.score;
    const reasons = [c.reason_1, c.reason_2, c.reason_3].filter((r) => r);
    const days = history.days;
    const bars = days.map((d) => ({ x: parseDay(d.day), y: d.amount,
      title: `${d.day}: ${fmtMoney(d.amount)} (${fmtInt(d.transactions)} transaction` +
        `${d.transactions === 1 ? "" : "s"})` }));
    const total = days.reduce((sum, d) => sum + d.amount, 0);
    return [
      h("h1", {}, `Customer ${c.customer_id}`),
      customerSearch(id),
      h("section", { class: "panel" },
        h("div", { class: "cards" },
          card("Churn risk", fmtRisk(c.churn_risk), `no purchase in the next horizon, as of ${c.as_of}`,
            { "data-metric": "churn_risk", "data-value": c.churn_risk }),
          card("Risk band", band(c.risk_band), null),
          card("Segment", c.segment, "RFM segment"),
          card("Value at risk", fmtMoney(c.value_at_risk),
            `expected spend ${fmtMoney(c.expected_value)} × risk`),
          card("Days since last purchase", fmtInt(c.recency_days), null),
          card("Purchase days", fmtInt(c.frequency), `spent ${fmtMoney(c.monetary_total)} in all`))),
      panel("Why the risk is what it is",
        reasons.length
          ? h("ol", { class: "reasons", id: "reasons" }, reasons.map((r) => h("li", {}, r)))
          : h("p", { class: "muted", id: "reasons" },
            "Nothing in this customer's history raises the risk: no reason to show.")),
      panel("Purchase history",
        h("p", { class: "sub" }, `${fmtInt(days.length)} purchase days up to ${history.as_of} ` +
          "(the chart runs to that date, so a long silence shows), " +
          `${fmtMoney(total)} net in all (refunds netted; currency of the data).`),
        days.length ? chartBox({ yLabel: "net amount per day", xLabel: "purchase date",
          xMax: parseDay(history.as_of),
          yFormat: (v) => fixed(v, Math.abs(v) < 10 && v % 1 ? 1 : 0), bars, zeroBased: true,
          ariaLabel: "purchases per day" }) : h("p", { class: "muted" }, "No purchases.")),
    ];
  }

  // --- model --------------------------------------------------------------------------

  const METRICS = [["auc", "ROC AUC", 3], ["pr_auc", "PR AUC", 3], ["brier", "Brier", 3],
    ["log_loss", "log loss", 3], ["lift_top_decile", "top-decile lift", 2]];
  const MODEL_NAMES = { churnlens: "churnlens (this model)", recency: "recency only",
    logistic: "logistic regression", bgnbd: "BG/NBD" };

  function metricRows(models) {
    const names = Object.keys(models).sort((a, b) =>
      (a === "churnlens" ? -1 : b === "churnlens" ? 1 : a.localeCompare(b)));
    return names.map((name) => h("tr", {},
      h("th", { scope: "row" }, MODEL_NAMES[name] || name),
      METRICS.map(([key, , digits]) => h("td", { class: "num" }, fmtNum(models[name][key], digits))),
      h("td", { class: "num" }, fmtPct(models[name].predicted_retention)),
      h("td", { class: "num" }, fmtPct(models[name].actual_retention))));
  }
  const metricHead = () => [["model"], ...METRICS.map(([, label]) => [label, "num"]),
    ["retention, predicted", "num"], ["actual", "num"]];

  // Which optional endpoints this server has (from its OpenAPI document, which holds no
  // data): an absent one is said so on the page, not asked for and answered 404.
  let schemaPaths = null;
  async function hasEndpoint(path) {
    if (schemaPaths === null) {
      try {
        const schema = await api("/openapi.json");
        schemaPaths = new Set(Object.keys(schema.paths || {}));
      } catch (ignored) {
        schemaPaths = new Set();
      }
    }
    return schemaPaths.has(path);
  }

  // GET /monitoring (the ledger against what happened, and the alerts), or why not.
  async function monitoringReport() {
    if (!(await hasEndpoint("/monitoring"))) {
      return { report: null, why: "this server has no monitoring" };
    }
    try {
      return { report: await api("/monitoring"), why: null };
    } catch (error) {
      if (error.status === 404 || error.status === 503) {
        return { report: null, why: error.message.replace(/^\/monitoring answered \d+: /, "") };
      }
      throw error;
    }
  }

  async function monitoringPanel() {
    const { report, why } = await monitoringReport();
    if (!report) {
      return panel("Monitoring", h("p", { class: "notice", id: "monitoring" },
        `Monitoring not available: ${why}`));
    }
    const closed = report.entries.filter((e) => e.status === "closed" && e.realized);
    const rows = closed.map((e) => h("tr", {},
      h("td", {}, e.as_of),
      h("td", {}, `${nextDay(e.as_of)} to ${e.period_end}`),
      h("td", { class: "num" }, fmtInt(e.customers)),
      h("td", { class: "num" }, fmtNum(e.realized.auc, 3)),
      h("td", { class: "num" }, fmtNum(e.realized.backtest_auc, 3)),
      h("td", { class: "num" }, fmtNum(e.realized.brier, 3)),
      ["cohort_retention", "crr"].map((name) => {
        const r = e.realized.rates.find((x) => x.rate === name) || {};
        return h("td", { class: "num" }, `${fmtPct(r.predicted)} → ${fmtPct(r.actual)}`);
      })));
    return panel("Monitoring",
      h("p", { class: "sub", id: "monitoring-counts" },
        `${fmtInt(report.entries_total)} prediction${report.entries_total === 1 ? "" : "s"} ` +
        `in the ledger: ${fmtInt(report.closed)} ` +
        `closed (what happened is known, data up to ${report.data_last_day}), ` +
        `${fmtInt(report.open)} open.`),
      report.alerts.length
        ? h("ul", { class: "warnings", id: "monitoring" }, report.alerts.map((a) =>
          h("li", {}, `${a.as_of}: ${a.message}`)))
        : h("p", { class: "muted", id: "monitoring" }, "No alerts."),
      rows.length ? table([["scored on"], ["horizon"], ["customers", "num"],
        ["AUC, realized", "num"], ["AUC, backtest", "num"], ["Brier, realized", "num"],
        ["cohort retention, predicted → actual", "num"], ["CRR, predicted → actual", "num"]],
      rows, { id: "monitoring-entries" }) : null,
      report.notes.length ? h("ul", { class: "muted" }, report.notes.map((n) => h("li", {}, n)))
        : null);
  }

  async function model() {
    const [info, monitoring] = await Promise.all([api("/model"), monitoringPanel()]);
    const backtestRows = [];
    for (const run of info.backtest) {
      for (const row of metricRows(run.models || {})) {
        row.prepend(h("td", {}, `${run.as_of} + ${fmtInt(run.horizon_days)} days`));
        backtestRows.push(row);
      }
    }
    return [
      h("h1", {}, "The model"),
      h("section", { class: "panel" }, h("dl", { class: "facts", id: "model-facts" },
        h("dt", {}, "name"), h("dd", {}, info.name || "n/a"),
        h("dt", {}, "version"), h("dd", {}, info.version || "n/a (a bundle)"),
        h("dt", {}, "alias"), h("dd", {}, info.alias || "n/a"),
        h("dt", {}, "trained as of"), h("dd", {}, info.as_of),
        h("dt", {}, "horizon"), h("dd", {}, `${fmtInt(info.horizon_days)} days`),
        h("dt", {}, "feature windows"), h("dd", {}, info.windows_days.map((d) => `${d} days`).join(", ")),
        h("dt", {}, "features"), h("dd", {}, fmtInt(info.features.length)),
        h("dt", {}, "run"), h("dd", {}, info.run_id || "n/a"))),
      panel("Validation against the baselines",
        h("p", { class: "sub" }, "The model and its baselines on the same evaluation data: " +
          "scored with the history known then, compared with what happened over the " +
          "horizon. Higher AUC and lift are " +
          "better; lower Brier and log loss are better. Retention: share of the scored " +
          "customers who bought in the horizon."),
        table(metricHead(), metricRows(info.metrics), { id: "model-metrics" })),
      backtestRows.length ? panel("Backtest by date",
        table([["date + horizon"], ...metricHead()], backtestRows, { id: "model-backtest" }))
        : null,
      monitoring,
    ];
  }

  // --- routing --------------------------------------------------------------------------

  const ROUTES = [
    [/^#?\/?$/, "overview", () => overview()],
    [/^#\/at-risk(?:\?(.*))?$/, "at-risk", (m) => atRisk(m[1])],
    [/^#\/customer(?:\/([^?]*))?$/, "customer", (m) => customer(m[1])],
    [/^#\/model\/?$/, "model", () => model()],
  ];
  let generation = 0;

  function showError(error) {
    if (error instanceof SignInRequired) {
      // the session ended (or was never there): the sign-in page, then back here
      app.replaceChildren(h("div", { class: "error", id: "sign-in-required" },
        "Sign in required: ", error.message, ". ", h("a", { href: "/sign-in" }, "Sign in")));
      location.assign("/sign-in");
    } else {
      app.replaceChildren(h("div", { class: "error", id: "page-error" },
        `Could not load this page: ${error.message}`));
    }
  }

  async function route() {
    const token = ++generation;
    const hash = location.hash || "#/";
    const found = ROUTES.map(([pattern, name, view]) => [hash.match(pattern), name, view])
      .find(([m]) => m);
    const [match, name, view] = found || [null, "missing", null];
    document.body.removeAttribute("data-ready");
    for (const link of document.querySelectorAll("nav a[data-nav]")) {
      if (link.dataset.nav === name) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    statusLine.textContent = "loading…";
    try {
      const content = view ? await view(match)
        : [h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to the overview"))];
      if (token !== generation) return;
      app.replaceChildren(...[].concat(content).filter((x) => x));
      drawCharts();
      document.title = `churnlens: ${name}`;
    } catch (error) {
      if (token !== generation) return;
      showError(error);
    }
    statusLine.textContent = "";
    try {
      const health = await api("/health");
      if (servedStamp !== null && servedStamp !== health.loaded_at) facetsCache = null;
      servedStamp = health.loaded_at;
      if (token === generation) {
        statusLine.textContent = `data as of ${health.data_as_of} · ` +
          `${fmtInt(health.customers_scored)} customers scored`;
      }
    } catch (ignored) { /* the status line is a courtesy */ }
    if (token === generation) document.body.setAttribute("data-ready", name);
  }

  window.addEventListener("hashchange", route);
  route();
}());
