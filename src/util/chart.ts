// A line chart as a standalone SVG string: the loss curves that training writes next to a checkpoint (loss.svg)
// and that the server draws for checkpoints without a picture. Hand-written because one chart of two lines does not
// need a plotting library (Vega, Vega-Lite and resvg were 28 MB of the install for this alone). No DOM, no fonts
// to load: any browser or image viewer shows it, and it is the same bytes for the same data.

export interface Series {
  label: string;
  color: string;
  points: [number, number][]; // (x, y); non-finite points are left out
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
}

const PAD = { left: 56, right: 16, top: 28, bottom: 40 };

const esc = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/"/g, "&quot;");

/** About `count` round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  const raw = (hi - lo) / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

const label = (x: number): string => (Number.isInteger(x) ? x.toLocaleString("en-US") : String(x));

/** The chart as SVG text; with no finite point it says so instead of drawing axes. */
export function lineChartSvg(series: Series[], o: ChartOptions): string {
  const W = o.width ?? 480;
  const H = o.height ?? 260;
  const lines = series.map((s) => ({ ...s, points: s.points.filter(([x, y]) => Number.isFinite(x + y)) }));
  const all = lines.flatMap((s) => s.points);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="16" text-anchor="middle" font-size="12">${esc(o.title)}</text>`,
  ];
  if (all.length === 0) {
    out.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle" fill="#888">no data yet</text>`, "</svg>");
    return out.join("\n");
  }
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (x1 === x0) [x0, x1] = [x0 - 1, x1 + 1];
  if (y1 === y0) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const inner = niceTicks(y0, y1);
  const xTicks = niceTicks(x0, x1).filter((t) => t >= x0 && t <= x1);
  // The y range grows to the next tick on either side, labelled too, so the curve never touches the frame.
  const step = inner.length > 1 ? inner[1] - inner[0] : 1;
  y0 = Number((Math.floor(y0 / step) * step).toPrecision(12));
  y1 = Number((Math.ceil(y1 / step) * step).toPrecision(12));
  const yTicks = niceTicks(y0, y1, Math.round((y1 - y0) / step));
  const px = (x: number) => PAD.left + ((x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
  const py = (y: number) => H - PAD.bottom - ((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
  const f = (v: number) => v.toFixed(1);
  for (const t of yTicks) {
    out.push(
      `<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${f(py(t))}" y2="${f(py(t))}" stroke="#e4e4e4"/>`,
      `<text x="${PAD.left - 6}" y="${f(py(t) + 4)}" text-anchor="end">${label(t)}</text>`,
    );
  }
  for (const t of xTicks) {
    out.push(`<text x="${f(px(t))}" y="${H - PAD.bottom + 15}" text-anchor="middle">${label(t)}</text>`);
  }
  out.push(
    `<path d="M${PAD.left},${PAD.top} V${H - PAD.bottom} H${W - PAD.right}" fill="none" stroke="#444"/>`,
    `<text x="${(PAD.left + W - PAD.right) / 2}" y="${H - 6}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text transform="translate(14 ${(PAD.top + H - PAD.bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`,
  );
  let legendY = PAD.top + 6;
  for (const s of lines) {
    if (s.points.length === 0) continue;
    const d = s.points.map(([x, y], i) => `${i ? "L" : "M"}${f(px(x))},${f(py(y))}`).join(" ");
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.5"/>`);
    for (const [x, y] of s.points) out.push(`<circle cx="${f(px(x))}" cy="${f(py(y))}" r="2.5" fill="${s.color}"/>`);
    if (!s.label) continue; // unlabelled: a line without a legend entry
    out.push(
      `<rect x="${W - PAD.right - 92}" y="${legendY}" width="12" height="3" fill="${s.color}"/>`,
      `<text x="${W - PAD.right - 76}" y="${legendY + 4}">${esc(s.label)}</text>`,
    );
    legendY += 14;
  }
  out.push("</svg>");
  return out.join("\n");
}

/**
 * What a model's losses are per, by its tokenizer kind: a char model's tokens are characters; a word or bpe model's
 * training and validation losses are per token (its per-character figures are reported beside them, not plotted).
 */
export function lossUnit(tokenizer: string | undefined): "char" | "token" {
  return tokenizer === undefined || tokenizer === "char" ? "char" : "token";
}

/**
 * The loss curves of a run: training and validation loss against optimizer steps, in nats per character or per
 * token as `tokenizer` (a kind: char, word, bpe) says, titled "NAME: loss (nats/UNIT)".
 */
export function lossChartSvg(
  history: { step: number; trainLoss?: number | null; valLoss?: number | null }[],
  name: string,
  tokenizer: string | undefined,
): string {
  const points = (key: "trainLoss" | "valLoss") =>
    history.flatMap((h) => (typeof h[key] === "number" ? [[h.step, h[key]] as [number, number]] : []));
  const unit = `nats/${lossUnit(tokenizer)}`;
  return lineChartSvg(
    [
      { label: "train", color: "#4878d0", points: points("trainLoss") },
      { label: "validation", color: "#ee854a", points: points("valLoss") },
    ],
    { title: `${name}: loss (${unit})`, xLabel: "step", yLabel: `loss (${unit})` },
  );
}
