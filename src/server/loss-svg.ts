// The loss curve as a small standalone SVG, drawn from the history stored in the checkpoint, for checkpoints that
// carry no picture of their own. Two lines (training and validation loss, nats per character) against steps.

import type { LossPoint } from "./served-model.js";

const W = 480;
const H = 240;
const PAD = { left: 48, right: 12, top: 24, bottom: 32 };

const fmt = (x: number): string => (Number.isInteger(x) || Math.abs(x) >= 100 ? x.toFixed(0) : x.toPrecision(3));
const esc = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");

export function lossCurveSvg(history: LossPoint[], title: string): string {
  const series = [
    { key: "trainLoss" as const, label: "train", color: "#4878d0" },
    { key: "valLoss" as const, label: "validation", color: "#ee854a" },
  ].map((s) => ({
    ...s,
    points: history.filter((p) => Number.isFinite(p[s.key])).map((p) => [p.step, p[s.key]!] as const),
  }));
  const all = series.flatMap((s) => s.points);
  const head = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`;
  const titleEl = `<text x="${W / 2}" y="15" text-anchor="middle" font-size="12">${esc(title)}</text>`;
  if (all.length === 0) {
    return `${head}${titleEl}<text x="${W / 2}" y="${H / 2}" text-anchor="middle" fill="#888">no loss history in this checkpoint</text></svg>`;
  }
  const x0 = Math.min(...all.map((p) => p[0]));
  let x1 = Math.max(...all.map((p) => p[0]));
  let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const px = (x: number) => PAD.left + ((x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
  const py = (y: number) => H - PAD.bottom - ((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
  const parts = [head, titleEl];
  // Axes with their end values: enough to read the curve's range without a plotting library.
  parts.push(
    `<path d="M${PAD.left},${PAD.top} V${H - PAD.bottom} H${W - PAD.right}" fill="none" stroke="#444"/>`,
    `<text x="${PAD.left - 4}" y="${py(y1) + 4}" text-anchor="end">${fmt(y1)}</text>`,
    `<text x="${PAD.left - 4}" y="${py(y0)}" text-anchor="end">${fmt(y0)}</text>`,
    `<text x="${px(x0)}" y="${H - PAD.bottom + 14}" text-anchor="start">${fmt(x0)}</text>`,
    `<text x="${px(x1)}" y="${H - PAD.bottom + 14}" text-anchor="end">${fmt(x1)}</text>`,
    `<text x="${(PAD.left + W - PAD.right) / 2}" y="${H - 4}" text-anchor="middle">step</text>`,
  );
  let legendY = PAD.top + 4;
  for (const s of series) {
    if (s.points.length === 0) continue;
    const d = s.points.map((p, i) => `${i ? "L" : "M"}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join(" ");
    parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.5"/>`);
    if (s.points.length === 1)
      parts.push(`<circle cx="${px(s.points[0][0])}" cy="${py(s.points[0][1])}" r="3" fill="${s.color}"/>`);
    parts.push(
      `<rect x="${W - PAD.right - 90}" y="${legendY}" width="10" height="3" fill="${s.color}"/>`,
      `<text x="${W - PAD.right - 76}" y="${legendY + 4}">${s.label}</text>`,
    );
    legendY += 14;
  }
  parts.push("</svg>");
  return parts.join("");
}
