// bench/claims-per-second.svg: decided claims/s per design, one bar each, on a log scale so
// the baselines stay visible next to the engine.
import { DESIGN_LABELS, type Results } from './report.js';

export function renderChart(results: Results): string {
  const entries = Object.entries(results.designs).map(([design, result]) => ({ label: DESIGN_LABELS[design] ?? design, value: result.claimsPerSecond as number }));
  const width = 900;
  const barHeight = 34;
  const left = 320;
  const top = 50;
  const height = top + entries.length * (barHeight + 12) + 40;
  const maximum = Math.max(...entries.map((entry) => entry.value));
  const scale = (value: number) => ((Math.log10(Math.max(value, 1)) / Math.log10(maximum * 1.5)) * (width - left - 120));
  const bars = entries
    .map((entry, index) => {
      const y = top + index * (barHeight + 12);
      const barWidth = Math.max(2, scale(entry.value));
      const color = entry.label.startsWith('hongbao') ? '#d7263d' : '#6c757d';
      return [
        `<text x="${left - 10}" y="${y + barHeight / 2 + 5}" text-anchor="end" font-size="14">${escape(entry.label)}</text>`,
        `<rect x="${left}" y="${y}" width="${barWidth.toFixed(1)}" height="${barHeight}" fill="${color}" rx="3"/>`,
        `<text x="${left + barWidth + 8}" y="${y + barHeight / 2 + 5}" font-size="14">${Math.round(entry.value).toLocaleString('en-US')}/s</text>`,
      ].join('\n  ');
    })
    .join('\n  ');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">
  <rect width="100%" height="100%" fill="white"/>
  <text x="${width / 2}" y="28" text-anchor="middle" font-size="18" font-weight="bold">Decided claims per second, same workload (log scale) — ${results.date.slice(0, 10)}, ${results.machine.cores} cores</text>
  ${bars}
</svg>
`;
}

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
