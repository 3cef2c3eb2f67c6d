// 驾驶舱: every number comes from the indicator API for the page's filters (the staff cookie authorises these reads),
// so the cockpit, the API and the assistant show one figure. Charts: Apache ECharts, served by the app.
"use strict";

const root = document.getElementById("cockpit");
const setup = JSON.parse(root.dataset.setup);
const base = { start: setup.start, end: setup.end, ...setup.filters };
const KPIS = ["order_count", "completion_rate", "on_time_rate", "satisfaction_rate", "overdue_count",
              "average_handling_hours"];
const RED = "#c8102e";
const charts = {};
let catalogue = {};
let mapMode = "volume";

async function api(path, params = {}) {
  const query = new URLSearchParams({ ...base, ...params });
  const response = await fetch(`${path}?${query}`, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function formatted(value, unit) {
  if (value === null || value === undefined) return "—";
  if (unit === "比例") return `${(value * 100).toFixed(1)}%`;
  if (unit === "小时" || unit === "分钟") return `${value.toFixed(1)}${unit}`;
  return `${Math.round(value).toLocaleString("zh-CN")}${unit === "件" ? "件" : ""}`;
}

function change(current, before, entry) {
  // 环比/同比 as the change of the value; a rate's change is in percentage points.
  if (current === null || before === null || before === undefined) return { text: "—", cls: "" };
  const diff = current - before;
  const rate = entry.unit === "比例";
  const text = rate ? `${diff >= 0 ? "+" : ""}${(diff * 100).toFixed(1)}个百分点`
                    : before ? `${diff >= 0 ? "+" : ""}${((diff / before) * 100).toFixed(1)}%` : "—";
  const good = diff === 0 || text === "—" ? null : (diff > 0) === entry.higher_is_better;
  return { text, cls: good === null ? "" : good ? "better" : "worse" };
}

function chart(id) {
  if (!charts[id]) charts[id] = echarts.init(document.getElementById(id));
  return charts[id];
}

async function kpis() {
  // One call: every key figure with 环比 and 同比, from one read of the orders per period.
  const data = await api("/api/v1/indicators/figures", { measures: KPIS.join(","), compare: true, year_before: true });
  const box = document.getElementById("kpis");
  box.replaceChildren(...KPIS.map((name) => {
    const entry = catalogue[name];
    const figure = data.figures[name];
    const current = figure.value;
    const mom = change(current, figure.previous.value, entry);
    const yoyChange = change(current, figure.year_before.value, entry);
    return el("div", { class: "kpi", title: entry.definition },
      el("span", { class: "kpi-label" }, entry.label),
      el("strong", { class: "kpi-value", "data-indicator": name }, formatted(current, entry.unit)),
      el("span", { class: `kpi-change ${mom.cls}`, title: "与前一个等长时段相比" }, `环比 ${mom.text}`),
      el("span", { class: `kpi-change ${yoyChange.cls}` }, `同比 ${yoyChange.text}`));
  }));
}

async function trend() {
  const data = await api("/api/v1/indicators/order_count", { by: "day", top: 400, min_denominator: 1 });
  const days = Object.keys(data.breakdown).sort();
  chart("trend").setOption({
    grid: { left: 48, right: 16, top: 16, bottom: 32 }, tooltip: { trigger: "axis" },
    xAxis: { type: "category", data: days.map((d) => d.slice(5)) }, yAxis: { type: "value", minInterval: 1 },
    series: [{ type: "line", smooth: true, data: days.map((d) => data.breakdown[d].value), color: RED,
               areaStyle: { opacity: 0.12 } }],
  });
}

async function requestTypes() {
  const data = await api("/api/v1/indicators/ranking", { dimension: "request_type", top: 10 });
  chart("request-types").setOption({
    tooltip: { trigger: "item", formatter: "{b}: {c}件 ({d}%)" },
    series: [{ type: "pie", radius: ["38%", "68%"],
               data: Object.entries(data.breakdown).map(([type, n]) => ({ name: type, value: n })) }],
  });
}

async function channels() {
  const data = await api("/api/v1/indicators/ranking", { dimension: "channel", top: 20 });
  chart("channels").setOption({
    tooltip: { trigger: "item", formatter: "{b}: {c}件 ({d}%)" },
    series: [{ type: "pie", radius: ["38%", "68%"],
               data: Object.entries(data.breakdown).map(([code, n]) => ({ name: setup.channels[code] || code, value: n })) }],
  });
}

async function categories() {
  // 大类 → 子类 → 细类: the filter's depth says which level the chart shows; a bar click goes one level down.
  const path = setup.filters.category || "";
  const depth = path ? path.split("/").length : 0;
  const level = ["category1", "category2", "category3"][depth];
  document.getElementById("category-title").textContent = [
    "事项大类（点击查看子类）", `${path} · 子类（点击查看细类）`, `${path.replace("/", " · ")} · 细类`][depth];
  const data = await api("/api/v1/indicators/order_count", { by: level, top: 12, min_denominator: 1 });
  const rows = Object.values(data.breakdown).reverse();
  const c = chart("categories");
  c.setOption({
    grid: { left: 120, right: 24, top: 8, bottom: 24 }, tooltip: {},
    xAxis: { type: "value", minInterval: 1 },
    yAxis: { type: "category", data: rows.map((r) => r.label.split("/").pop()) },
    series: [{ type: "bar", data: rows.map((r) => r.value), color: RED }],
  });
  c.off("click");
  if (depth < 2) {
    c.on("click", (params) => drill({ category: rows[params.dataIndex].label }));
  }
}

function drill(change) {
  const query = new URLSearchParams(window.location.search);
  for (const [key, value] of Object.entries(change)) query.set(key, value);
  window.location.search = query.toString();
}

let shapes = null;
async function districtMap() {
  if (!shapes) {
    const response = await fetch("/cockpit/districts.geojson", { credentials: "same-origin" });
    shapes = await response.json();
    echarts.registerMap("city", shapes);
  }
  const measure = mapMode === "volume" ? "order_count" : "on_time_rate";
  const data = await api(`/api/v1/indicators/${measure}`, { by: "district", top: 100, min_denominator: 1,
                                                          district: "" });
  const rows = Object.entries(data.breakdown).map(([code, r]) => ({ name: r.label, value: r.value, code }));
  const values = rows.map((r) => r.value);
  const c = chart("map");
  c.setOption({
    tooltip: { trigger: "item", formatter: (p) => `${p.name}: ${p.value === undefined || isNaN(p.value) ? "—"
      : mapMode === "volume" ? `${p.value}件` : `${(p.value * 100).toFixed(1)}%`}` },
    visualMap: { min: Math.min(...values, 0), max: Math.max(...values, 1), left: 8, bottom: 8, calculable: true,
                 inRange: { color: mapMode === "volume" ? ["#fff5f0", RED] : ["#c8102e", "#fff8c5", "#116329"] },
                 formatter: (v) => (mapMode === "volume" ? Math.round(v) : `${(v * 100).toFixed(0)}%`) },
    series: [{ type: "map", map: "city", roam: false, data: rows,
               emphasis: { label: { show: true } }, label: { show: true, fontSize: 11 },
               select: { disabled: true } }],
  }, true);
  c.off("click");
  c.on("click", (params) => {
    const row = rows.find((r) => r.name === params.name);
    const feature = shapes.features.find((f) => f.properties.name === params.name);
    const code = row ? row.code : feature ? String(feature.properties.adcode) : null;
    if (code) drill({ district: code });
  });
}

async function streets() {
  // City → district → street → the orders behind it: the streets of the chosen district (or of the city), a click
  // lists that street's orders.
  const districtName = setup.filters.district ? setup.districts[setup.filters.district] : "全市";
  document.getElementById("streets-title").textContent = `${districtName}街道（乡镇）诉求量（点击查看工单）`;
  const data = await api("/api/v1/indicators/order_count", { by: "street", top: 12, min_denominator: 1 });
  const rows = Object.entries(data.breakdown).filter(([code]) => code !== "未知")
    .map(([code, r]) => ({ code, label: r.label, value: r.value })).reverse();
  const c = chart("streets");
  c.setOption({
    grid: { left: 110, right: 24, top: 8, bottom: 24 }, tooltip: {},
    xAxis: { type: "value", minInterval: 1 }, yAxis: { type: "category", data: rows.map((r) => r.label) },
    series: [{ type: "bar", data: rows.map((r) => r.value), color: RED }],
  }, true);
  c.off("click");
  c.on("click", (params) => {
    const query = new URLSearchParams({ start: setup.start, end: setup.end, ...setup.filters,
                                        street: rows[params.dataIndex].code });
    window.location.href = `/cockpit/orders?${query}`;
  });
}

async function hotAreas() {
  const data = await api("/api/v1/indicators/hot_areas", { min_count: 3, top: 8 });
  const items = (data.breakdown.areas || []).map((a) =>
    el("li", {}, `${a.district_name || ""}${a.street && a.street !== "未知" ? ` ${a.street}` : ""}`
      + `${a.community ? ` ${a.community}` : ""}：${a.count}件（上期${a.previous ?? "—"}件）`));
  document.getElementById("hot-areas").replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, "暂无高发区域")]));
}

async function hotTopics() {
  const data = await api("/api/v1/indicators/hot_topics", { top: 8 });
  const items = (data.breakdown.topics || []).map((t) => el("li", { title: t.topic }, `${t.label || t.topic}（${t.size}件）`));
  document.getElementById("hot-topics").replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, "暂无热点诉求")]));
}

function rateClass(value) {
  if (value === null || value === undefined) return "";
  return value >= 0.9 ? "ok" : value >= 0.8 ? "watch" : "alarm";
}

let unitRows = [];
async function units() {
  // One call: every column of every unit from one read of the orders (GET /api/v1/indicators/table).
  const data = await api("/api/v1/indicators/table", { by: "department" });
  unitRows = Object.entries(data.rows).map(([code, r]) => {
    const done = r.on_time_rate, handled = r.completion_rate;
    return {
      code, name: setup.departments[code] || r.label || code,
      order_count: r.order_count.value,
      on_time_done: done.numerator ?? 0,
      late_done: (done.denominator ?? 0) - (done.numerator ?? 0),
      not_closed: (handled.denominator ?? 0) - (handled.numerator ?? 0),
      completion_rate: handled.value, on_time_rate: done.value, overdue_count: r.overdue_count.value,
      returns: r.returns ? r.returns["退单"] : 0, at_fault: r.returns ? r.returns["有责退单"] : 0,
      dissatisfaction_rate: r.dissatisfaction_rate.value,
    };
  }).filter((r) => r.order_count);
  drawUnits("order_count", -1);
}

function dissatisfactionClass(value) {
  // Lower is better: ≤5% 达标, 5%–10% 关注, above 10% 预警.
  if (value === null || value === undefined) return "";
  return value <= 0.05 ? "ok" : value <= 0.1 ? "watch" : "alarm";
}

function drawUnits(key, direction) {
  unitRows.sort((a, b) => (key === "name" ? a.name.localeCompare(b.name, "zh") : (a[key] ?? -1) - (b[key] ?? -1)) * direction);
  const body = document.querySelector("#units tbody");
  body.replaceChildren(...unitRows.slice(0, 60).map((r) => el("tr", { "data-unit": r.code },
    el("td", {}, r.name), el("td", {}, String(r.order_count ?? 0)),
    el("td", {}, String(r.on_time_done)), el("td", { class: r.late_done ? "watch" : "" }, String(r.late_done)),
    el("td", {}, String(r.not_closed)),
    ...["completion_rate", "on_time_rate"].map((k) => el("td", { class: rateClass(r[k]) }, formatted(r[k] ?? null, "比例"))),
    el("td", { class: r.overdue_count ? "alarm" : "" }, String(r.overdue_count ?? 0)),
    el("td", {}, String(r.returns ?? 0)), el("td", {}, String(r.at_fault ?? 0)),
    el("td", { class: dissatisfactionClass(r.dissatisfaction_rate) }, formatted(r.dissatisfaction_rate ?? null, "比例")))));
}

document.querySelectorAll("#units th").forEach((th) => {
  let direction = -1;
  th.addEventListener("click", () => { direction = -direction; drawUnits(th.dataset.key, direction); });
});

async function alerts() {
  const data = await api("/api/v1/indicators/alerts", { limit: 20 });
  const items = (data.breakdown.alerts || []).slice(0, 12).map((a) =>
    el("li", { class: `sev-row sev-${a.severity}` }, el("span", { class: `badge sev sev-${a.severity}` }, a.severity),
       ` ${a.kind}：${a.reason}`));
  document.getElementById("alerts").replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, "暂无预警")]));
}

async function vitals() {
  const response = await fetch("/api/v1/vitals", { credentials: "same-origin" });
  if (!response.ok) return;
  const data = await response.json();
  const items = data.vitals.filter((v) => v.level !== "normal").slice(0, 10).map((v) =>
    el("li", { class: v.stale ? "muted" : "" }, el("span", { class: `badge level-${v.level}` }, v.level_label),
       ` ${v.area} ${v.name} ${v.value}${v.unit || ""}（${v.at.slice(0, 10)}${v.stale ? "，已过期" : ""}）`));
  const summary = Object.entries(data.levels).map(([label, n]) => `${label}${n}`).join(" · ")
    + (data.stale ? ` · ${data.stale}项已过期` : "");
  document.getElementById("vitals").replaceChildren(el("li", { class: "muted" }, summary),
    ...(items.length ? items : [el("li", {}, "各项体征正常")]));
}

document.querySelectorAll("[data-map]").forEach((button) => button.addEventListener("click", () => {
  mapMode = button.dataset.map;
  document.querySelectorAll("[data-map]").forEach((b) => b.classList.toggle("on", b === button));
  districtMap();
}));

function ordersLink() {
  const query = new URLSearchParams({ start: setup.start, end: setup.end, ...setup.filters });
  document.getElementById("orders-link").href = `/cockpit/orders?${query}`;
}

function drawn(part) {
  // When each panel was drawn (benchmarks/cockpit_paint.py reads these): data-drawn-<panel> = epoch ms.
  return part().then((value) => {
    root.dataset[`drawn${part.name[0].toUpperCase()}${part.name.slice(1)}`] = String(Date.now());
    return value;
  });
}

async function refresh() {
  // The key figures and the light charts first; the heavy lists (text similarity, per-unit columns) after them,
  // so the two server cores answer what an official reads first.
  const first = await Promise.allSettled([kpis, trend, channels, requestTypes, categories].map(drawn));
  const second = await Promise.allSettled([districtMap, streets, units, hotAreas, hotTopics, alerts, vitals].map(drawn));
  const failed = [...first, ...second].filter((o) => o.status === "rejected").length;
  const now = new Date();
  document.getElementById("refreshed").textContent =
    `更新于 ${now.toLocaleTimeString("zh-CN", { hour12: false })}${failed ? `（${failed}项未能加载）` : ""}`;
  root.dataset.loaded = String(Date.now());
}

window.addEventListener("resize", () => Object.values(charts).forEach((c) => c.resize()));
(async () => {
  ordersLink();
  const listing = await (await fetch("/api/v1/indicators", { credentials: "same-origin" })).json();
  catalogue = Object.fromEntries(listing.indicators.map((entry) => [entry.name, entry]));
  await refresh();
  setInterval(refresh, setup.refreshSeconds * 1000);
})();
