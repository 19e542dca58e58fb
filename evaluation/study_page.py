"""The study page's style and script (pairwise.py writes the page around them).

The script reads the pairs from the page, keeps {pair: {alignment, quality}} in localStorage under
the study's id, moves to the next pair once both questions are answered, shows the progress, and
downloads the choices as JSON. It marks the document with data-study-ready="yes" when it has run
and counts uncaught errors in data-study-errors, for the headless browser test.
"""

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; padding: 0 1em; color: #222; }
.pair { display: flex; gap: 1.5em; justify-content: center; }
.pair img { width: 45%; max-width: 512px; image-rendering: auto; border: 1px solid #ccc; }
.aspects { display: flex; gap: 3em; justify-content: center; margin: 1em 0; }
button { font-size: 1em; margin: 0 .2em; padding: .3em .9em; }
button.chosen { background: #2a6; color: white; }
#prompt { font-size: 1.2em; text-align: center; font-style: italic; }
#progress { text-align: center; }
.note { color: #666; }
"""

SCRIPT = r"""
(function () {
  var root = document.documentElement;
  window.addEventListener("error", function () {
    root.setAttribute("data-study-errors", String(Number(root.getAttribute("data-study-errors") || 0) + 1));
  });
  var data = JSON.parse(document.getElementById("study-data").textContent);
  var key = "pixcap-study:" + data.study;
  var state;
  try { state = JSON.parse(window.localStorage.getItem(key)) || {}; } catch (err) { state = {}; }
  state.choices = state.choices || {};
  var position = Math.min(Number(state.position || 0), data.pairs.length - 1);

  function save() {
    state.position = position;
    window.localStorage.setItem(key, JSON.stringify(state));
  }
  function answered(pair) {
    var c = state.choices[pair.pair];
    return c && c.alignment && c.quality;
  }
  function done() {
    return data.pairs.filter(answered).length;
  }
  function model(pair, side) {  // a side on screen -> the model shown there
    if (side === "tie") return "tie";
    var other = pair.left === "a" ? "b" : "a";
    return side === "left" ? pair.left : other;
  }
  function show() {
    var pair = data.pairs[position];
    document.getElementById("left").src = pair.images[0];
    document.getElementById("right").src = pair.images[1];
    document.getElementById("prompt").textContent = pair.prompt;
    var count = done();
    var progress = document.getElementById("progress");
    progress.textContent = "Pair " + (position + 1) + " of " + data.pairs.length + " \u00b7 " + count + " answered";
    progress.setAttribute("data-done", String(count));
    var choice = state.choices[pair.pair] || {};
    document.querySelectorAll("button[data-aspect]").forEach(function (button) {
      var chosen = choice[button.dataset.aspect] === model(pair, button.dataset.side);
      button.classList.toggle("chosen", chosen);
    });
  }
  document.querySelectorAll("button[data-aspect]").forEach(function (button) {
    button.addEventListener("click", function () {
      var pair = data.pairs[position];
      var choice = state.choices[pair.pair] = state.choices[pair.pair] || {};
      choice[button.dataset.aspect] = model(pair, button.dataset.side);
      if (answered(pair) && position < data.pairs.length - 1) position += 1;
      save();
      show();
    });
  });
  document.getElementById("previous").addEventListener("click", function () {
    position = Math.max(0, position - 1); save(); show();
  });
  document.getElementById("next").addEventListener("click", function () {
    position = Math.min(data.pairs.length - 1, position + 1); save(); show();
  });
  document.getElementById("download").addEventListener("click", function () {
    var choices = data.pairs.filter(function (p) { return state.choices[p.pair]; }).map(function (p) {
      var c = state.choices[p.pair];
      return {pair: p.pair, prompt_id: p.prompt_id, image_index: p.image_index, seed: p.seed, prompt: p.prompt,
              left: p.left, alignment: c.alignment || null, quality: c.quality || null};
    });
    var out = {kind: data.kind, study: data.study, a: data.a, b: data.b, pairs: data.pairs.length, choices: choices};
    var blob = new Blob([JSON.stringify(out, null, 1)], {type: "application/json"});
    var link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "pixcap-study-" + data.study + ".json";
    document.body.appendChild(link);
    link.click();
    link.remove();
  });
  show();
  root.setAttribute("data-study-ready", "yes");
})();
"""
