// Runs synchronously in <head>, before the first paint, so the page never flashes the wrong theme.
// A classic script (not a module, not inline) so it blocks rendering and needs no CSP exception.
(function () {
  var theme = null;
  try {
    theme = window.localStorage.getItem("cryptostock.theme");
  } catch (error) {
    // Storage can be disabled (privacy mode); the system preference still applies.
  }
  if (theme !== "dark" && theme !== "light") {
    theme = window.matchMedia("(prefers-color-scheme: light)").matches ? "light" : "dark";
  }
  document.documentElement.dataset.theme = theme;
})();
