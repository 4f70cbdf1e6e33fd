// Renders the server's OpenAPI document as plain HTML (no external viewer, nothing loaded from elsewhere).
"use strict";

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function resolve(spec, schema) {
  if (schema && schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return spec.components.schemas[name];
  }
  return schema || {};
}

function typeOf(spec, schema) {
  const resolved = resolve(spec, schema);
  if (resolved.anyOf) return resolved.anyOf.map((part) => typeOf(spec, part)).join(" or ");
  if (resolved.type === "array") return `array of ${typeOf(spec, resolved.items)}`;
  if (resolved.format === "binary" || resolved.contentMediaType) return "file";
  return resolved.type || "object";
}

function parameterTable(spec, parameters, body) {
  const rows = [];
  for (const parameter of parameters || []) {
    rows.push([parameter.name, parameter.in, typeOf(spec, parameter.schema), parameter.required, parameter.description]);
  }
  for (const [type, content] of Object.entries((body && body.content) || {})) {
    const schema = resolve(spec, content.schema);
    for (const [name, field] of Object.entries(schema.properties || {})) {
      const required = (schema.required || []).includes(name);
      rows.push([name, type, typeOf(spec, field), required, resolve(spec, field).description]);
    }
  }
  if (!rows.length) return element("p", "No parameters.", "muted");
  const table = element("table", null, "params");
  const head = element("tr");
  for (const title of ["name", "in", "type", "required", "description"]) head.append(element("th", title));
  table.append(head);
  for (const [name, where, type, required, description] of rows) {
    const row = element("tr");
    for (const cell of [name, where, type, required ? "yes" : "no", description || ""]) row.append(element("td", cell));
    table.append(row);
  }
  return table;
}

function operationCard(spec, path, method, operation) {
  const card = element("section", null, "card operation");
  card.append(element("h2", `${method.toUpperCase()} ${path}`));
  for (const paragraph of (operation.description || operation.summary || "").split("\n\n")) {
    card.append(element("p", paragraph));
  }
  const security = (operation.security || []).length ? "Token: see the description." : "";
  if (security) card.append(element("p", security, "muted"));
  card.append(parameterTable(spec, operation.parameters, operation.requestBody));
  const responses = element("ul", null, "responses");
  for (const [status, response] of Object.entries(operation.responses || {})) {
    responses.append(element("li", `${status}: ${response.description}`));
  }
  card.append(element("h3", "Responses"), responses);
  return card;
}

async function render() {
  const main = document.getElementById("api");
  const spec = await (await fetch("/openapi.json")).json();
  main.append(element("p", spec.info.description));
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      main.append(operationCard(spec, path, method, operation));
    }
  }
}

render();
