// Swagger UI at /api/docs, started from this file rather than an inline script: the page's CSP allows only
// scripts of this origin.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const container = document.getElementById("swagger-ui-container");
  window.ui = SwaggerUIBundle({
    url: container.dataset.specUrl,
    dom_id: "#swagger-ui-container",
    validatorUrl: null, // no badge fetched from swagger.io
  });
});
