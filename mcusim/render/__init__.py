"""Renderers: pure functions from reports to rich renderables (console, step, train,
profile), plots and profile exports.  Shared rules: numbers through `units` (human units,
3 significant digits, no exponent), text from code, users or data through `layout.esc`
(rich markup shown literally), tables as `layout.Stack` (readable at 80 columns)."""
