// The API docs, built in the browser from /openapi.json: every operation, its parameters,
// bodies and answers, and a form to try it against this server. Loads nothing from elsewhere.
"use strict";

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

const refName = (schema) => (schema && schema.$ref ? schema.$ref.split("/").pop() : null);
const pretty = (value) => JSON.stringify(value, null, 2);

function prose(text) {
  // `code` spans of the OpenAPI descriptions as <code>, the rest as plain text
  return (text || "").split("`").map((part, i) => (i % 2 ? el("code", { textContent: part }) : part));
}

function sampleDigit() {
  // a 28x28 MNIST-style "1": light ink on black, as {"pixels": ...} expects
  const rows = [];
  for (let r = 0; r < 28; r += 1) {
    const row = new Array(28).fill(0);
    if (r >= 4 && r < 24) {
      row[13] = 255;
      row[14] = 255;
      row[12] = 90;
      row[15] = 90;
    }
    rows.push(row);
  }
  return `{"pixels": [\n  ${rows.map((row) => JSON.stringify(row)).join(",\n  ")}\n]}`;
}

function parametersTable(parameters) {
  if (!parameters || !parameters.length) return null;
  return el(
    "div",
    {},
    el("h3", { textContent: "Parameters" }),
    el(
      "table",
      {},
      el("tr", {}, ["name", "in", "type", "description"].map((t) => el("th", { textContent: t }))),
      parameters.map((p) =>
        el(
          "tr",
          {},
          el("td", {}, el("code", { textContent: p.name })),
          el("td", { textContent: p.in }),
          el("td", {
            textContent: [
              p.schema.type,
              p.schema.minimum !== undefined ? `≥ ${p.schema.minimum}` : "",
              p.schema.maximum !== undefined ? `≤ ${p.schema.maximum}` : "",
              p.schema.default !== undefined ? `default ${p.schema.default}` : "",
            ]
              .filter(Boolean)
              .join(", "),
          }),
          el("td", { textContent: p.description || p.schema.description || "" }),
        ),
      ),
    ),
  );
}

function bodySection(requestBody) {
  if (!requestBody) return null;
  const content = requestBody.content;
  return el(
    "div",
    {},
    el("h3", { textContent: "Request body (one of)" }),
    Object.entries(content).map(([type, media]) => {
      const schema = media.schema || {};
      return el(
        "details",
        { class: "schema" },
        el("summary", {}, el("code", { textContent: type })),
        schema.format === "binary"
          ? el("p", { class: "muted small", textContent: "the image file's bytes as the body" })
          : el("pre", { textContent: pretty(schema) }),
      );
    }),
  );
}

function responsesTable(responses) {
  return el(
    "div",
    {},
    el("h3", { textContent: "Answers" }),
    el(
      "table",
      {},
      el("tr", {}, ["status", "meaning", "body"].map((t) => el("th", { textContent: t }))),
      Object.entries(responses).map(([status, response]) => {
        const schema = ((response.content || {})["application/json"] || {}).schema;
        return el(
          "tr",
          {},
          el("td", {}, el("code", { textContent: status })),
          el("td", { textContent: response.description || "" }),
          el("td", { textContent: refName(schema) || (schema ? schema.type || "" : "") }),
        );
      }),
    ),
  );
}

function tryIt(path, method, operation) {
  const form = el("form", { class: "try" });
  form.append(el("h3", { textContent: "Try it" }));
  const params = (operation.parameters || []).map((p) => {
    const input = el("input", {
      name: p.name,
      value: p.schema.default !== undefined ? String(p.schema.default) : "",
    });
    form.append(el("label", {}, `${p.name} (${p.in})`, input));
    return { p, input };
  });
  let typeSelect = null;
  let text = null;
  let file = null;
  if (operation.requestBody) {
    const types = Object.keys(operation.requestBody.content);
    typeSelect = el(
      "select",
      { name: "content-type" },
      types.map((t) => el("option", { value: t, textContent: t })),
    );
    typeSelect.value = types.includes("application/json") ? "application/json" : types[0];
    text = el("textarea", { name: "body", spellcheck: false, value: sampleDigit() });
    file = el("input", { type: "file", accept: "image/*", name: "file" });
    const textLabel = el("label", {}, "JSON body", text);
    const fileLabel = el("label", {}, "Image file", file);
    const sync = () => {
      const json = typeSelect.value === "application/json";
      textLabel.hidden = !json;
      fileLabel.hidden = json;
    };
    typeSelect.addEventListener("change", sync);
    form.append(el("label", {}, "Content-Type", typeSelect), textLabel, fileLabel);
    sync();
  }
  const status = el("span", { class: "reply-status" });
  const reply = el("pre", { hidden: true });
  form.append(el("div", { class: "row" }, el("button", { class: "button", type: "submit", textContent: "Send" }), status), reply);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const { p, input } of params) if (input.value !== "") query.set(p.name, input.value);
    const url = path + (query.toString() ? `?${query}` : "");
    const init = { method: method.toUpperCase(), headers: {} };
    if (typeSelect) {
      const type = typeSelect.value;
      if (type === "application/json") {
        init.headers["Content-Type"] = type;
        init.body = text.value;
      } else if (type === "multipart/form-data") {
        init.body = new FormData();
        if (file.files[0]) init.body.append("file", file.files[0]);
      } else {
        init.headers["Content-Type"] = type;
        init.body = file.files[0] || new Blob([]);
      }
    }
    status.textContent = "…";
    const started = performance.now();
    try {
      const response = await fetch(url, init);
      const body = await response.text();
      const ms = (performance.now() - started).toFixed(0);
      status.textContent = `${response.status} ${response.statusText} · ${ms} ms`;
      status.className = `reply-status ${response.ok ? "good" : "bad"}`;
      let shown = body;
      try {
        shown = pretty(JSON.parse(body));
      } catch (ignored) {
        // not JSON: shown as it came
      }
      reply.textContent = shown;
      reply.hidden = false;
    } catch (error) {
      status.textContent = `no answer: ${error.message}`;
      status.className = "reply-status bad";
    }
  });
  return form;
}

function operationCard(path, method, operation) {
  return el(
    "details",
    { class: "card op", id: `${method}-${path.replaceAll("/", "-")}` },
    el(
      "summary",
      {},
      el("span", { class: `method ${method}`, textContent: method.toUpperCase() }),
      el("span", { class: "path", textContent: path }),
      el("span", { class: "summary", textContent: operation.summary || "" }),
    ),
    el(
      "div",
      { class: "body" },
      el("p", {}, prose(operation.description)),
      parametersTable(operation.parameters),
      bodySection(operation.requestBody),
      responsesTable(operation.responses),
      tryIt(path, method, operation),
    ),
  );
}

async function main() {
  let spec;
  try {
    const response = await fetch("/openapi.json");
    spec = await response.json();
  } catch (error) {
    const box = document.getElementById("docs-error");
    box.textContent = `Could not load /openapi.json: ${error.message}`;
    box.hidden = false;
    return;
  }
  document.title = `${spec.info.title} · API`;
  document.getElementById("title").textContent = spec.info.title;
  document.getElementById("version").textContent =
    `version ${spec.info.version} · OpenAPI ${spec.openapi}`;
  document.getElementById("description").replaceChildren(...prose(spec.info.description));
  const operations = document.getElementById("operations");
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      operations.append(operationCard(path, method, operation));
    }
  }
  const first = operations.querySelector("details");
  if (first) first.open = true;
  const schemas = document.getElementById("schemas");
  for (const [name, schema] of Object.entries((spec.components || {}).schemas || {})) {
    schemas.append(
      el(
        "details",
        { class: "schema" },
        el("summary", { textContent: name }),
        el("pre", { textContent: pretty(schema) }),
      ),
    );
  }
  document.body.dataset.ready = "true";
}

main();
