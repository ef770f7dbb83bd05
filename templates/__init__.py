"""Built-in Jinja2 templates for ZeroSite reports."""
