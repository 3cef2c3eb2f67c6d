// The web chat page: sends what the person types to POST /api/v1/chat and shows the assistant's answers
// (text, quick-reply buttons, bar charts drawn as SVG). Every piece of text goes in through textContent, never as
// HTML. An official's login token lives in sessionStorage (gone when the tab closes) and goes out as a Bearer header.
"use strict";

(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const STAFF_KEY = "hotline.staff";
  const MAX_CHARS = 2000;

  const $ = (id) => document.getElementById(id);
  const messages = $("messages");
  const input = $("input");
  const sendButton = $("send");
  const typing = $("typing");
  let busy = false;

  // -- building blocks ------------------------------------------------------------------------------------------
  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attributes, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function append(node) {
    messages.appendChild(node);
    messages.scrollTop = messages.scrollHeight;
    return node;
  }

  const say = (who, text) => append(element("div", "msg " + who, text));

  function formatNumber(value) {
    const rounded = Math.round(value * 100) / 100;
    return rounded.toLocaleString("zh-CN", { maximumFractionDigits: 2 });
  }

  // -- a horizontal bar chart: labels on the left, value and unit at the end of each bar -----------------------
  function barChart(chart) {
    const labels = Array.isArray(chart.labels) ? chart.labels.map(String) : [];
    const values = Array.isArray(chart.values) ? chart.values.map(Number) : [];
    if (!labels.length || labels.length !== values.length || values.some((v) => !Number.isFinite(v))) return null;
    const unit = chart.unit ? String(chart.unit) : "";
    const width = 320, labelWidth = 92, valueWidth = 64, rowHeight = 24, top = chart.title ? 26 : 6;
    const barRoom = width - labelWidth - valueWidth;
    const height = top + labels.length * rowHeight + 4;
    const largest = Math.max(0, ...values) || 1;
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "bar-chart", role: "img",
                              "aria-label": chart.title ? String(chart.title) : "图表" });
    if (chart.title) root.appendChild(svg("text", { x: 0, y: 16, class: "chart-title" }, String(chart.title)));
    labels.forEach((label, i) => {
      const y = top + i * rowHeight;
      const shown = label.length > 7 ? label.slice(0, 6) + "…" : label;
      const labelNode = svg("text", { x: labelWidth - 6, y: y + 15, "text-anchor": "end", class: "label" }, shown);
      labelNode.appendChild(svg("title", {}, label));
      root.appendChild(labelNode);
      const barWidth = Math.max(1, (Math.max(0, values[i]) / largest) * barRoom);
      root.appendChild(svg("rect", { x: labelWidth, y: y + 4, width: barWidth.toFixed(1), height: rowHeight - 8,
                                     rx: 2, class: "bar" }));
      root.appendChild(svg("text", { x: labelWidth + barWidth + 4, y: y + 15, class: "value" },
                           formatNumber(values[i]) + unit));
    });
    return root;
  }

  // -- the assistant's messages -------------------------------------------------------------------------------
  function showAnswer(message) {
    if (typeof message.text === "string" && message.text.trim()) say("bot", message.text);
    const chart = message.custom && message.custom.chart;
    if (chart) {
      const drawing = barChart(chart);
      if (drawing) append(element("div", "msg bot chart")).appendChild(drawing);
    }
    const link = message.custom && message.custom.link;
    // The service only passes paths on this site (clean_link); checked again here before it becomes an href.
    if (link && typeof link.href === "string" && link.href.startsWith("/") && !link.href.startsWith("//")) {
      const anchor = element("a", "", String(link.title || "查看"));
      anchor.href = link.href;
      anchor.target = "_blank";
      anchor.rel = "noopener";
      append(element("div", "msg bot link")).appendChild(anchor);
    }
    if (Array.isArray(message.buttons) && message.buttons.length) {
      const row = append(element("div", "quick-replies"));
      for (const choice of message.buttons) {
        const button = element("button", "", String(choice.title));
        button.type = "button";
        button.addEventListener("click", () => {
          row.querySelectorAll("button").forEach((b) => { b.disabled = true; });
          send(String(choice.payload || choice.title), String(choice.title));
        });
        row.appendChild(button);
      }
    }
  }

  function reasonOf(body, fallback) {
    if (body && typeof body.detail === "string") return body.detail;
    if (body && Array.isArray(body.detail) && body.detail.length && body.detail[0].msg) {
      return String(body.detail[0].msg).replace(/^Value error, /, "");
    }
    return fallback;
  }

  // -- staff login (optional) ---------------------------------------------------------------------------------
  function staff() {
    try { return JSON.parse(sessionStorage.getItem(STAFF_KEY) || "null"); } catch (e) { return null; }
  }

  function showStaff() {
    const current = staff();
    $("staff-toggle").hidden = Boolean(current);
    $("staff-status").hidden = !current;
    $("staff-name").textContent = current ? `已登录：${current.username}` : "";
  }

  function logout(notice) {
    sessionStorage.removeItem(STAFF_KEY);
    showStaff();
    if (notice) say("notice", notice);
  }

  async function login(event) {
    event.preventDefault();
    const username = $("login-username").value.trim();
    const password = $("login-password").value;
    $("login-error").textContent = "";
    try {
      const response = await fetch("/api/v1/auth/token", {
        method: "POST", headers: { "Content-Type": "application/json" }, credentials: "same-origin",
        body: JSON.stringify({ username, password }),
      });
      const body = await response.json().catch(() => null);
      if (!response.ok || !body || !body.access_token) {
        $("login-error").textContent = response.status === 401 ? "用户名或密码错误" : reasonOf(body, "登录失败，请稍后再试");
        return;
      }
      sessionStorage.setItem(STAFF_KEY, JSON.stringify({ token: body.access_token, username, role: body.role }));
      $("login-password").value = "";
      $("login").hidden = true;
      showStaff();
      say("notice", "已登录，可以询问指标，例如“本月岳麓区诉求量多少件”。");
    } catch (e) {
      $("login-error").textContent = "网络异常，请稍后再试";
    }
  }

  // -- one turn -----------------------------------------------------------------------------------------------
  async function send(text, shown) {
    if (busy) return;
    const message = text.trim();
    if (!message) return;
    if (message.length > MAX_CHARS) { say("notice", `消息过长，最多 ${MAX_CHARS} 字`); return; }
    busy = true;
    sendButton.disabled = true;
    say("user", shown || message);
    typing.hidden = false;
    const headers = { "Content-Type": "application/json" };
    const current = staff();
    if (current && current.token) headers.Authorization = "Bearer " + current.token;
    try {
      const response = await fetch("/api/v1/chat", {
        method: "POST", headers, credentials: "same-origin", body: JSON.stringify({ message }),
      });
      const body = await response.json().catch(() => null);
      if (response.ok && Array.isArray(body)) {
        body.forEach(showAnswer);
      } else if (response.status === 401) {
        logout("登录已失效，请重新登录后再问。");
      } else if (response.status === 429) {
        say("notice", "发送太频繁，请稍后再试。");
      } else {
        say("notice", reasonOf(body, "助手暂时不可用，请拨打12345"));
      }
    } catch (e) {
      say("notice", "网络异常，请检查网络后重试。");
    } finally {
      typing.hidden = true;
      busy = false;
      sendButton.disabled = false;
      input.focus();
    }
  }

  // -- wiring -------------------------------------------------------------------------------------------------
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    if (!text.trim() || busy) return;
    input.value = "";
    send(text);
  });
  input.addEventListener("keydown", (event) => {
    // Enter sends; Shift+Enter is a new line; Enter that confirms a Chinese IME candidate must not send.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("staff-toggle").addEventListener("click", () => { $("login").hidden = false; $("login-username").focus(); });
  $("login-cancel").addEventListener("click", () => { $("login").hidden = true; });
  $("login").addEventListener("submit", login);
  $("logout").addEventListener("click", () => logout("已退出登录。"));
  showStaff();
})();
