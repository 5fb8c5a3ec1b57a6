"""The documentation's relative links point at files of the repository, and
their #anchors at headings of the files they name.

Checked: README.md, every docs/*.md and benchmarks/README.md. Inline links and
images (`[text](path)`, `[text](path#anchor)`, `[text](#anchor)`,
`![alt](path)`) and reference definitions (`[name]: path`); links with a
scheme (`https:`, `mailto:`) are not followed, and nothing inside code (fenced
blocks, `inline code`) is a link. An anchor must be the GitHub slug of a
heading of the target Markdown file: the heading's text as rendered (code
spans and links reduced to their text), lower-cased, every character other
than letters, digits, `_`, `-` and spaces dropped, each space made a hyphen,
and a repeated slug numbered `-1`, `-2`, ... as GitHub numbers it."""
import pathlib
import re
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parents[1]

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(?!`)([\s\S]*?[^`])\1(?!`)")
# [text](destination "title"), the text holding one level of brackets (an image
# inside a link); the destination plain (balanced parentheses allowed) or <...>.
LINK = re.compile(
    r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]"
    r"\(\s*(<[^<>\n]*>|[^()\s]*(?:\([^()\s]*\)[^()\s]*)*)"
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?\s*\)")
DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*(<[^<>\n]*>|\S+)", re.MULTILINE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def doc_files(root=ROOT):
  """The Markdown files whose links are checked."""
  files = [root / "README.md", *sorted((root / "docs").glob("*.md")),
           root / "benchmarks" / "README.md"]
  return [f for f in files if f.is_file()]


def split_fences(text):
  """(prose, headings): the text with fenced code blocks blanked (line numbers
  kept), and the headings outside them."""
  prose, headings, fence = [], [], None
  for line in text.split("\n"):
    m = FENCE.match(line)
    if fence is None and m:
      fence = m.group(1)
      prose.append("")
    elif fence is not None:
      if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) \
          and not line.strip()[len(m.group(1)):].strip():
        fence = None
      prose.append("")
    else:
      prose.append(line)
      h = HEADING.match(line)
      if h:
        headings.append(h.group(2))
  return "\n".join(prose), headings


def slug(heading):
  """GitHub's anchor for a heading's Markdown text (without the numbering of
  repeats)."""
  text = CODE_SPAN.sub(lambda m: m.group(2).strip(), heading)
  text = re.sub(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\([^)]*\)", r"\1", text)  # links: their text
  text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
  text = re.sub(r"(\*+|(?<!\w)_+|_+(?!\w))", "", text)  # emphasis markers
  text = text.strip().lower()
  text = "".join(c for c in text if c.isalnum() or c in "_- ")
  return text.replace(" ", "-")


def anchors(path):
  """Every anchor GitHub gives the headings of a Markdown file."""
  _, headings = split_fences(path.read_text(encoding="utf-8"))
  seen, result = {}, set()
  for heading in headings:
    base = slug(heading)
    n = seen.get(base, 0)
    seen[base] = n + 1
    result.add(base if n == 0 else f"{base}-{n}")
  return result


def links(text):
  """(line number, destination) of every link of a Markdown text."""
  prose, _ = split_fences(text)
  # Code spans blanked to spaces, newlines kept, so positions keep their lines.
  prose = CODE_SPAN.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), prose)
  found = []

  def scan(chunk, offset):
    for m in LINK.finditer(chunk):
      found.append((offset + m.start(), m.group(2)))
      scan(m.group(1), offset + m.start(1))  # an image inside the link's text
  scan(prose, 0)
  found += [(m.start(1), m.group(1)) for m in DEFINITION.finditer(prose)]
  return sorted((prose.count("\n", 0, pos) + 1, dest.strip("<>")) for pos, dest in found)


def check(files, root=ROOT):
  """One line per broken link: 'FILE:LINE: DESTINATION: why'."""
  problems, anchor_cache = [], {}
  for path in files:
    for line, dest in links(path.read_text(encoding="utf-8")):
      if not dest or SCHEME.match(dest):
        continue
      target, _, anchor = dest.partition("#")
      target = urllib.parse.unquote(target)
      resolved = (path.parent / target).resolve() if target else path.resolve()
      where = f"{path.relative_to(root)}:{line}: {dest}"
      if not resolved.exists():
        problems.append(f"{where}: no such file")
      elif anchor and resolved.suffix.lower() == ".md":
        if resolved not in anchor_cache:
          anchor_cache[resolved] = anchors(resolved)
        if urllib.parse.unquote(anchor).lower() not in anchor_cache[resolved]:
          problems.append(f"{where}: no heading with that anchor in {resolved.name}")
  return problems


def test_docs_links():
  files = doc_files()
  names = {str(f.relative_to(ROOT)) for f in files}
  assert {"README.md", "benchmarks/README.md", "docs/README.md"} <= names
  problems = check(files)
  assert not problems, "broken links:\n" + "\n".join(problems)


def test_checker_reports_broken_links(tmp_path):
  (tmp_path / "docs").mkdir()
  (tmp_path / "docs" / "page.md").write_text(
      "# Page\n\n## Speed: `python x.py` (or `wmrl bench`)\n\n## Weights & Biases\n\n"
      "## Twice\n\n## Twice\n")
  (tmp_path / "image.png").write_bytes(b"")
  (tmp_path / "README.md").write_text("\n".join([
      "# Top",
      "[good](docs/page.md) [good anchor](docs/page.md#speed-python-xpy-or-wmrl-bench)",
      "[ampersand](docs/page.md#weights--biases) [repeat](docs/page.md#twice-1) [self](#top)",
      "![image](image.png) [web](https://example.com/missing.md) [mail](mailto:a@b.c)",
      "[missing file](docs/gone.md)",
      "![missing image](images/gone.png)",
      "[bad anchor](docs/page.md#speed)",
      "[bad self anchor](#nowhere)",
      "[split",
      "text](docs/also-gone.md)",
      "`[in code](docs/code.md)`",
      "```",
      "[in a fence](docs/fence.md)",
      "```",
      "[ref]: docs/ref-gone.md",
  ]) + "\n")
  problems = check([tmp_path / "README.md"], root=tmp_path)
  assert problems == [
      "README.md:5: docs/gone.md: no such file",
      "README.md:6: images/gone.png: no such file",
      "README.md:7: docs/page.md#speed: no heading with that anchor in page.md",
      "README.md:8: #nowhere: no heading with that anchor in README.md",
      "README.md:9: docs/also-gone.md: no such file",
      "README.md:15: docs/ref-gone.md: no such file",
  ]


def test_slug():
  assert slug("Watching a run: TensorBoard, Weights & Biases, videos") == \
      "watching-a-run-tensorboard-weights--biases-videos"
  assert slug("Seeds in groups: `run.seeds_batch`") == "seeds-in-groups-runseeds_batch"
  assert slug("The online queue (`replay.online`, default true)") == \
      "the-online-queue-replayonline-default-true"
  assert slug("1. Settings") == "1-settings"
  assert slug("Adding [a model](x.md), *step* by step") == "adding-a-model-step-by-step"
