"""The browser UI: server-rendered page shells (Jinja2) and plain ES modules that call the JSON
API. No bundler and no third-party JavaScript."""
