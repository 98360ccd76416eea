// The loss curve: training and validation loss per epoch, drawn with Vega-Lite (compiled to a Vega spec and
// rendered to SVG headlessly in Node) and rasterised to PNG with resvg. Written next to the checkpoint as
// loss.svg and loss.png. The libraries are loaded on first use, so commands that draw nothing do not pay for them.

import * as path from "node:path";
import { writeFileAtomic } from "./atomic.js";
import type { EpochRecord } from "./checkpoint.js";

export interface LossCurveFiles {
  svg: string;
  png: string | null; // null when the PNG renderer is not available on this platform
}

/** The Vega-Lite spec for a history (exported for tests and for the web page). */
export function lossCurveSpec(history: EpochRecord[], title: string): Record<string, unknown> {
  const values = history.flatMap((h) => [
    { epoch: h.epoch, loss: h.trainLoss, split: "train" },
    { epoch: h.epoch, loss: h.valLoss, split: "validation" },
  ]);
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title,
    width: 480,
    height: 280,
    background: "white",
    data: { values },
    mark: { type: "line", point: true },
    encoding: {
      x: { field: "epoch", type: "quantitative", title: "epoch", axis: { tickMinStep: 1, format: "d" } },
      y: { field: "loss", type: "quantitative", title: "loss (nats/char)", scale: { zero: false } },
      color: { field: "split", type: "nominal", title: null },
    },
  };
}

/** Render the history to `dir`/loss.svg and `dir`/loss.png (atomic writes). */
export async function writeLossCurve(
  dir: string,
  history: EpochRecord[],
  title = "charlm loss",
): Promise<LossCurveFiles> {
  const vega = await import("vega");
  const vl = await import("vega-lite");
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const compiled = vl.compile(lossCurveSpec(history, title) as any).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  const svg = await view.toSVG();
  view.finalize();
  const svgFile = path.join(dir, "loss.svg");
  await writeFileAtomic(svgFile, svg);
  const pngFile = path.join(dir, "loss.png");
  try {
    const { Resvg } = await import("@resvg/resvg-js");
    const png = new Resvg(svg, { fitTo: { mode: "width", value: 1000 }, background: "white" }).render().asPng();
    await writeFileAtomic(pngFile, png);
  } catch {
    return { svg: svgFile, png: null }; // the SVG is the picture; the PNG is a convenience
  }
  return { svg: svgFile, png: pngFile };
}
