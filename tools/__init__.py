"""Tools apart from the program: the offline engine and `render`, the capacity `preflight`, the critical-path model,
chart rendering and the catalog generator. They import the program's modules; no module of `infra/` imports them."""
