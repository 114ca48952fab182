// MathJax settings for pymdownx.arithmatex (generic mode): render \( \) and \[ \] spans (with
// \_ and friends inside \text{}), and typeset again after material's instant page loads.
window.MathJax = {
  loader: {load: ["[tex]/textmacros"]},
  tex: {inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]],
        packages: {"[+]": ["textmacros"]}, processEscapes: true, processEnvironments: true},
  options: {ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex"},
};
document$.subscribe(() => {
  if (window.MathJax && MathJax.typesetPromise) {
    MathJax.startup.output.clearCache();
    MathJax.typesetClear();
    MathJax.texReset();
    MathJax.typesetPromise();
  }
});
