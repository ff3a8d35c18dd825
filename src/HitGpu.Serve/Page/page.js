// hitgpu serve: the page's script. Plain browser JavaScript, no build step; it talks only to the server that served it.
'use strict';

(() => {
  const LABELS = {
    danceability: 'Danceability', energy: 'Energy', key: 'Key', loudness: 'Loudness (dB)', mode: 'Mode',
    speechiness: 'Speechiness', acousticness: 'Acousticness', instrumentalness: 'Instrumentalness', liveness: 'Liveness',
    valence: 'Valence', tempo: 'Tempo (BPM)', duration_ms: 'Duration (ms)', time_signature: 'Time signature',
    chorus_hit: 'Chorus hit (s)', sections: 'Sections',
  };
  const INTEGER_FEATURES = new Set(['key', 'mode', 'time_signature', 'sections']);
  const NOTES = ['C', 'C♯/D♭', 'D', 'D♯/E♭', 'E', 'F', 'F♯/G♭', 'G', 'G♯/A♭', 'A', 'A♯/B♭', 'B'];
  const HINTS = {
    key: (v) => (Number.isInteger(v) && v >= 0 && v < 12 ? NOTES[v] : ''),
    mode: (v) => (v === 1 ? 'major' : v === 0 ? 'minor' : ''),
    duration_ms: (v) => {
      if (!(v >= 0)) return '';
      const seconds = Math.round(v / 1000);
      return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, '0')} min`;
    },
  };
  const DEBOUNCE_MS = 100;

  const $ = (id) => document.getElementById(id);
  const el = (tag, props = {}, children = []) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = value;
      else if (key.startsWith('data-') || key.startsWith('aria-') || key === 'for' || key === 'role') node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) node.append(child);
    return node;
  };
  const label = (name) => LABELS[name] ?? name.replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());
  const percent = (p) => `${(p * 100).toFixed(1)}%`;
  const points = (v) => {
    const text = Math.abs(v * 100).toFixed(1);
    if (text === '0.0') return '0.0';
    return (v > 0 ? '+' : '−') + text;
  };
  const integer = (n) => Number(n).toLocaleString('en-US');

  let model = null;
  const fields = new Map(); // feature name -> { number, range, hint, feature }
  let predictionSeq = 0;
  let predictionTimer = 0;
  let lastPrediction = null;
  let errorSource = null;
  let scored = null; // { text, name, header, rows, numeric, sortColumn, sortDir }

  // Three state attributes on <body>: `state` is the latest event, `prediction` and `csv` each track one half of the page,
  // so a test waiting for one is not fooled by the other.
  function setState(part, state) {
    document.body.dataset.state = state;
    document.body.dataset[part] = state;
    const status = $('status');
    status.dataset.state = state;
    status.textContent = state;
  }

  function showError(message, source) {
    const line = $('error');
    line.textContent = message;
    line.title = message;
    line.hidden = false;
    errorSource = source;
  }

  function clearError(source) {
    if (errorSource !== source) return;
    const line = $('error');
    line.textContent = '';
    line.hidden = true;
    errorSource = null;
  }

  // The server answers errors as {"error": "..."}; anything else (a proxy's page, a crash) is shown by its status.
  async function failure(response) {
    const text = await response.text().catch(() => '');
    let message = null;
    try {
      message = JSON.parse(text).error;
    } catch {
      message = null;
    }
    if (typeof message !== 'string' || message === '') {
      const detail = text.trim().split('\n')[0].slice(0, 200);
      message = `HTTP ${response.status} ${response.statusText}${detail ? `: ${detail}` : ''}`;
    }
    return new Error(message);
  }

  function describe(error) {
    return error instanceof TypeError ? `cannot reach the server (${error.message})` : error.message;
  }

  // ---- Model and training ----

  // One chip of "name value · name value" pairs; pairs whose value is missing are left out.
  function facts(lead, pairs) {
    const present = pairs.filter(([, value]) => value !== null && value !== undefined);
    if (present.length === 0) return null;
    const parts = lead ? [`${lead} `] : [];
    present.forEach(([name, value], i) => parts.push(`${i > 0 ? ' · ' : ''}${name} `, el('b', { text: value })));
    return el('span', { class: 'fact' }, parts);
  }

  function renderModel() {
    $('model-name').textContent = model.name;
    $('model-file').textContent = model.file ? `· ${model.file} · ${model.features.length} features` : `· ${model.features.length} features`;
    document.title = `${model.name} – HitGpu`;

    const box = $('training');
    box.replaceChildren();
    const t = model.training;
    if (!t) {
      box.append(el('span', { class: 'fact' }, ['This model file does not record how it was trained.']));
      return;
    }
    (t.data ?? []).forEach((d, i) => {
      const rows = typeof d.rows === 'number' ? ` ${integer(d.rows)} rows` : '';
      box.append(el('span', { class: 'fact' }, [i === 0 ? 'Trained on ' : 'and ', el('b', { text: d.source }), rows]), ' ');
    });
    const asText = (value) => (value === null || value === undefined ? null : String(value));
    const asPercent = (value) => (typeof value === 'number' ? percent(value) : null);
    const chips = [
      facts('', [['Epochs', asText(t.epochs)], ['Batch size', asText(t.batch_size)], ['Learning rate', asText(t.learning_rate)], ['Seed', asText(t.seed)]]),
      facts('Accuracy', [['train', asPercent(t.train_accuracy)], ['validation', asPercent(t.validation_accuracy)], ['test', asPercent(t.test_accuracy)]]),
    ];
    for (const chip of chips) {
      if (chip) box.append(chip, ' ');
    }
  }

  // ---- The form ----

  // A power of ten near a thousandth of the range, so slider values print short; whole steps for the integer features.
  function sliderStep(feature) {
    if (INTEGER_FEATURES.has(feature.name)) return 1;
    const step = 10 ** Math.floor(Math.log10((feature.max - feature.min) / 1000));
    return step >= 1 ? Math.round(step) : step;
  }

  const decimalsOf = (step) => (step >= 1 ? 0 : Math.min(10, Math.round(-Math.log10(step))));
  const startValue = (feature) => (typeof feature.median === 'number' ? Number(feature.median.toPrecision(12)) : 0);
  const hasRange = (f) => typeof f.min === 'number' && typeof f.max === 'number' && typeof f.median === 'number' && f.max > f.min;

  function buildForm() {
    const form = $('form');
    form.replaceChildren();
    fields.clear();
    for (const feature of model.features) {
      const name = feature.name;
      const hint = el('span', { class: 'hint', id: `hint-${name}` });
      const labelNode = el('label', { for: `feature-${name}`, id: `label-${name}` }, [label(name), hint]);
      const number = el('input', {
        type: 'number', id: `feature-${name}`, name, required: true, step: INTEGER_FEATURES.has(name) ? '1' : 'any',
      });
      number.value = String(startValue(feature));
      let range = null;
      let middle;
      if (hasRange(feature)) {
        const step = sliderStep(feature);
        const decimals = decimalsOf(step);
        // Slider ends on whole steps so every position is a short number.
        const low = (Math.floor(feature.min / step + 1e-9) * step).toFixed(decimals);
        const high = (Math.ceil(feature.max / step - 1e-9) * step).toFixed(decimals);
        range = el('input', {
          type: 'range', id: `feature-${name}-range`, min: low, max: high, step: String(step), 'aria-labelledby': `label-${name}`,
        });
        range.value = number.value;
        range.addEventListener('input', () => {
          number.value = String(Number(range.valueAsNumber.toFixed(decimals)));
          changed(name);
        });
        range.addEventListener('change', () => changed(name));
        middle = range;
      } else {
        middle = el('span', { class: 'no-range', text: 'no range in this model file' });
      }
      number.addEventListener('input', () => {
        if (range && number.value !== '') range.value = number.value;
        changed(name);
      });
      number.addEventListener('change', () => changed(name));
      form.append(el('div', { class: 'feature' }, [labelNode, middle, number]));
      fields.set(name, { number, range, hint, feature });
      updateHint(name);
    }
  }

  function updateHint(name) {
    const { number, hint } = fields.get(name);
    const toHint = HINTS[name];
    hint.textContent = toHint && number.value !== '' ? toHint(Number(number.value)) : '';
  }

  function changed(name) {
    updateHint(name);
    schedulePrediction();
  }

  function resetToMedians() {
    for (const { number, range, feature } of fields.values()) {
      number.value = String(startValue(feature));
      if (range) range.value = number.value;
      updateHint(feature.name);
    }
    schedulePrediction();
  }

  function readSong() {
    const song = {};
    let firstBad = null;
    for (const [name, { number }] of fields) {
      const value = number.value.trim() === '' ? NaN : Number(number.value);
      const bad = !Number.isFinite(value);
      number.setAttribute('aria-invalid', String(bad));
      if (bad && !firstBad) firstBad = name;
      song[name] = value;
    }
    if (firstBad) throw new Error(`${label(firstBad)}: enter a number`);
    return song;
  }

  // ---- One song's prediction ----

  // The sequence number is taken when the change happens, so an answer to an older request never overwrites a newer one
  // and never marks the page ready while a newer request is still waiting for its debounce.
  function schedulePrediction() {
    const seq = ++predictionSeq;
    setState('prediction', 'pending');
    clearTimeout(predictionTimer);
    predictionTimer = setTimeout(() => predict(seq), DEBOUNCE_MS);
  }

  async function predict(seq) {
    try {
      const song = readSong();
      const response = await fetch('predict?explain=true', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify([song]),
      });
      if (!response.ok) throw await failure(response);
      const answer = await response.json();
      if (seq !== predictionSeq) return;
      lastPrediction = answer[0];
      renderPrediction();
      clearError('prediction');
      setState('prediction', 'ready');
    } catch (error) {
      if (seq !== predictionSeq) return;
      showError(`Prediction: ${describe(error)}`, 'prediction');
      setState('prediction', 'error');
    }
  }

  function renderPrediction() {
    const r = lastPrediction;
    if (!r) return;
    $('probability').textContent = percent(r.probability);
    $('probability').dataset.value = String(r.probability); // the exact answer, for a test to hold to the library's
    const verdict = $('verdict');
    verdict.textContent = r.prediction;
    verdict.dataset.verdict = r.prediction;
    $('gauge-fill').style.width = `${Math.max(0, Math.min(1, r.probability)) * 100}%`;

    const names = model.features.map((f) => f.name);
    const contributions = r.contributions ?? {};
    const items = names.map((name) => ({ name, value: Number(contributions[name] ?? 0) }));
    const total = items.reduce((sum, item) => sum + item.value, 0);
    $('baseline').textContent = typeof r.baseline_probability === 'number'
      ? `Baseline song (training medians): ${percent(r.baseline_probability)} · contributions add up to ${points(total)} points`
      : '';
    if ($('order').value === 'impact') items.sort((a, b) => Math.abs(b.value) - Math.abs(a.value));

    const chart = $('contributions');
    chart.replaceChildren();
    const largest = Math.max(...items.map((item) => Math.abs(item.value)));
    for (const item of items) {
      const share = largest > 0 ? (Math.abs(item.value) / largest) * 50 : 0;
      const bar = el('div', {
        class: `bar ${item.value < 0 ? 'negative' : 'positive'}`,
        'data-feature': item.name,
        'data-value': String(item.value),
        title: `${label(item.name)}: ${points(item.value)} points`,
      });
      bar.style.width = `${share}%`;
      chart.append(el('div', { class: 'chart-row', role: 'listitem' }, [
        el('span', { class: 'chart-label', text: label(item.name), title: item.name }),
        el('div', { class: 'chart-track' }, [bar]),
        el('span', { class: 'chart-value', text: points(item.value) }),
      ]));
    }
  }

  // ---- CSV files ----

  // RFC 4180: quoted fields may hold separators, quotes ("") and line breaks.
  function parseCsv(text) {
    const rows = [];
    let row = [];
    let field = '';
    let quoted = false;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i++;
          } else {
            quoted = false;
          }
        } else {
          field += c;
        }
      } else if (c === '"') {
        quoted = true;
      } else if (c === ',') {
        row.push(field);
        field = '';
      } else if (c === '\n' || c === '\r') {
        if (c === '\r' && text[i + 1] === '\n') i++;
        row.push(field);
        rows.push(row);
        row = [];
        field = '';
      } else {
        field += c;
      }
    }
    if (field !== '' || row.length > 0) {
      row.push(field);
      rows.push(row);
    }
    return rows;
  }

  const isNumber = (s) => s.trim() !== '' && Number.isFinite(Number(s));

  async function scoreFile(file) {
    if (!file) return;
    const limit = model?.limits?.max_body_bytes;
    // A body over the limit is refused by the server anyway, often by closing the connection before the browser reads the answer.
    if (typeof limit === 'number' && file.size > limit) {
      showError(`${file.name}: ${(file.size / 1048576).toFixed(1)} MB is over the server's limit of ${(limit / 1048576).toFixed(1)} MB`, 'csv');
      setState('csv', 'error');
      return;
    }
    setState('csv', 'scoring');
    $('row-count').textContent = `Scoring ${file.name}…`;
    const url = $('explain-csv').checked ? 'predict?explain=true' : 'predict';
    try {
      const response = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'text/csv' }, body: file });
      if (!response.ok) throw await failure(response);
      const text = await response.text();
      renderTable(text, file.name);
      clearError('csv');
      setState('csv', 'scored');
    } catch (error) {
      showError(`${file.name}: ${describe(error)}`, 'csv');
      $('row-count').textContent = scored ? rowSummary() : 'No file scored yet.';
      setState('csv', 'error');
    }
  }

  function rowSummary() {
    const predictionColumn = scored.header.indexOf('prediction');
    const hits = predictionColumn < 0 ? null : scored.rows.filter((r) => r[predictionColumn] === 'Hit').length;
    const rows = `${integer(scored.rows.length)} ${scored.rows.length === 1 ? 'row' : 'rows'}`;
    return hits === null ? `${rows} · ${scored.name}` : `${rows} · ${integer(hits)} predicted Hit · ${scored.name}`;
  }

  function renderTable(text, name) {
    const rows = parseCsv(text.replace(/^\uFEFF/, ''));
    const header = rows.shift() ?? [];
    const body = rows.filter((r) => !(r.length === 1 && r[0] === ''));
    const numeric = header.map((_, c) => body.length > 0 && body.every((r) => (r[c] ?? '') === '' || isNumber(r[c])));
    scored = { text, name, header, rows: body, numeric, sortColumn: -1, sortDir: 0 };

    const headRow = el('tr');
    header.forEach((title, c) => {
      const th = el('th', { scope: 'col', tabIndex: 0, text: title, 'aria-sort': 'none', class: numeric[c] ? 'num' : '' });
      th.addEventListener('click', () => sortBy(c));
      th.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault();
          sortBy(c);
        }
      });
      headRow.append(th);
    });
    $('results').tHead.replaceChildren(headRow);
    renderRows();

    const counter = $('row-count');
    counter.textContent = rowSummary();
    counter.dataset.rows = String(body.length);
    $('download').disabled = false;
  }

  function renderRows() {
    const predictionColumn = scored.header.indexOf('prediction');
    const fragment = document.createDocumentFragment();
    for (const r of scored.rows) {
      const tr = document.createElement('tr');
      scored.header.forEach((_, c) => {
        const td = document.createElement('td');
        td.textContent = r[c] ?? '';
        if (scored.numeric[c]) td.className = 'num';
        else if (c === predictionColumn && r[c] === 'Hit') td.className = 'hit';
        tr.append(td);
      });
      fragment.append(tr);
    }
    $('results').tBodies[0].replaceChildren(fragment);
  }

  // First click sorts ascending, the next descending; empty cells stay last either way.
  function sortBy(column) {
    const dir = scored.sortColumn === column && scored.sortDir === 1 ? -1 : 1;
    scored.sortColumn = column;
    scored.sortDir = dir;
    const numeric = scored.numeric[column];
    const collator = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });
    const compare = (a, b) => {
      const x = a[column] ?? '';
      const y = b[column] ?? '';
      if (x === '' || y === '') return (x === '') - (y === '');
      return dir * (numeric ? Number(x) - Number(y) : collator.compare(x, y));
    };
    scored.rows.sort(compare);
    $('results').tHead.querySelectorAll('th').forEach((th, c) => {
      th.setAttribute('aria-sort', c === column ? (dir === 1 ? 'ascending' : 'descending') : 'none');
    });
    renderRows();
  }

  function download() {
    if (!scored) return;
    const url = URL.createObjectURL(new Blob([scored.text], { type: 'text/csv' }));
    const base = scored.name.replace(/\.[^.]*$/, '') || 'songs';
    const link = el('a', { href: url, download: `${base}.predictions.csv` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function takeFiles(files) {
    if (!files || files.length === 0) return;
    scoreFile(files[0]);
  }

  function wireCsv() {
    const drop = $('drop');
    const file = $('file');
    drop.addEventListener('dragover', (e) => {
      e.preventDefault();
      if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
      drop.classList.add('over');
    });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (e) => {
      e.preventDefault();
      e.stopPropagation();
      drop.classList.remove('over');
      takeFiles(e.dataTransfer?.files);
    });
    // A file dropped anywhere else on the page is scored too, instead of the browser opening it.
    document.addEventListener('dragover', (e) => e.preventDefault());
    document.addEventListener('drop', (e) => {
      e.preventDefault();
      takeFiles(e.dataTransfer?.files);
    });
    drop.addEventListener('click', (e) => {
      if (!e.target.closest('label, input')) file.click();
    });
    drop.addEventListener('keydown', (e) => {
      if (e.target === drop && (e.key === 'Enter' || e.key === ' ')) {
        e.preventDefault();
        file.click();
      }
    });
    file.addEventListener('change', () => {
      takeFiles(file.files);
      file.value = '';
    });
    $('download').addEventListener('click', download);
  }

  // ---- Start ----

  async function start() {
    wireCsv();
    $('form').addEventListener('submit', (e) => {
      e.preventDefault();
      schedulePrediction();
    });
    $('reset').addEventListener('click', resetToMedians);
    $('order').addEventListener('change', renderPrediction);
    try {
      const response = await fetch('model');
      if (!response.ok) throw await failure(response);
      model = await response.json();
    } catch (error) {
      $('training').textContent = '';
      showError(`Model: ${describe(error)}`, 'model');
      setState('prediction', 'error');
      return;
    }
    renderModel();
    buildForm();
    schedulePrediction();
  }

  start();
})();
