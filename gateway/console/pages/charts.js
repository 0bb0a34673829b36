// A uPlot time series; redrawn when its data change.
import uPlot from "/console/vendor/uplot/uPlot.esm.js";
import { html, useEffect, useRef } from "../ui.js";

export function Chart({ title, data }) {
  const box = useRef(null);
  useEffect(() => {
    const plot = new uPlot({ title, width: 420, height: 180, series: [{}, { label: title, stroke: "#2f6fb3", width: 1.5 }] },
      data, box.current);
    return () => plot.destroy();
  }, [title, JSON.stringify(data)]);
  return html`<figure class="chart" ref=${box}></figure>`;
}
