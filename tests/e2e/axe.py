"""axe-core accessibility checks for a Playwright page.

How axe gets into the page: the app's CSP is `script-src 'self'`, and Playwright's
`page.add_script_tag(path=...)` inserts the file as an *inline* <script>, which that policy
blocks ("Executing inline script violates the following Content Security Policy directive").
`page.evaluate(source)` is not blocked: it runs through the DevTools protocol, which the
page's CSP does not govern. So we evaluate axe's source directly, and the page under test
keeps its real CSP (no `bypass_csp=True` context needed, so CSP problems still show up).
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AXE_JS = ROOT / "node_modules" / "axe-core" / "axe.min.js"
FAIL_IMPACTS = ("serious", "critical")

_RUN = """async () => {
  const results = await axe.run(document, {resultTypes: ["violations"]});
  return results.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
    nodes: v.nodes.map(n => ({target: n.target.join(" "), summary: n.failureSummary})),
  }));
}"""


# axe-core 4.14 no longer has its duplicate-id rules, yet an id that a label (for=),
# aria-labelledby or aria-describedby points at must be unique: otherwise only the first
# element gets the name or description, and the other control is left unnamed.
_DUPLICATE_REFERENCED_IDS = """() => {
  const refs = new Set();
  document.querySelectorAll("label[for]").forEach(l => refs.add(l.htmlFor));
  document.querySelectorAll("[aria-labelledby], [aria-describedby]").forEach(el => {
    for (const attr of ["aria-labelledby", "aria-describedby"])
      (el.getAttribute(attr) || "").split(/\\s+/).filter(Boolean).forEach(id => refs.add(id));
  });
  return [...refs].filter(id => document.querySelectorAll(`[id="${CSS.escape(id)}"]`).length > 1);
}"""


def _axe_source() -> str:
    if not AXE_JS.exists():
        raise AssertionError(f"{AXE_JS} is missing: run `npm ci` (make install) first")
    return AXE_JS.read_text()


def violations(page) -> list[dict]:
    """All axe violations on the page as it is now. `page` may also be a Frame (the chat
    iframe, from `locator.element_handle().content_frame()`): axe then runs inside it."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(_axe_source())
    return page.evaluate(_RUN)


def assert_accessible(page) -> None:
    """Fail when axe finds any violation of impact serious or critical."""
    bad = [v for v in violations(page) if v["impact"] in FAIL_IMPACTS]
    for ident in page.evaluate(_DUPLICATE_REFERENCED_IDS):
        bad.append({"impact": "critical", "id": "duplicate-referenced-id",
                    "help": "An id used by a label or aria reference must be unique",
                    "helpUrl": "https://www.w3.org/TR/WCAG21/#parsing",
                    "nodes": [{"target": f"#{ident}", "summary": "more than one element has it"}]})
    if bad:
        lines = [f"axe found {len(bad)} serious/critical violation(s) on {page.url}:"]
        for v in bad:
            lines.append(f"- [{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
            for node in v["nodes"][:10]:
                lines.append(f"    at {node['target']}: {node['summary']}".replace("\n", " "))
        raise AssertionError("\n".join(lines))
