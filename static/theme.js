// Runs in <head>, before the page paints: applies a theme chosen earlier, if any.
(function () {
  try {
    const saved = localStorage.getItem("hookscope-theme");
    if (saved === "light" || saved === "dark") document.documentElement.dataset.theme = saved;
  } catch (e) { /* storage may be unavailable */ }
})();
