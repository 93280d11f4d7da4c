// The watchlist's sparkline: the same path market/overview.py's sparkline_path draws on the server,
// redrawn in the browser as live bars arrive. Pure: points in, path text out.

export const WIDTH = 120;
export const HEIGHT = 32;
const DAY_SECONDS = 86_400;
const PAD = 1;

/** SVG path of (time, close) points across WIDTH x HEIGHT; "" for fewer than two points. */
export function sparklinePath(points, width = WIDTH, height = HEIGHT) {
  if (points.length < 2) {
    return "";
  }
  const first = points[0][0];
  const spanT = points[points.length - 1][0] - first || 1;
  const values = points.map((point) => point[1]);
  const low = Math.min(...values);
  const high = Math.max(...values);
  const spanV = high - low || 1;
  return points
    .map(([time, value], index) => {
      const x = ((time - first) / spanT) * width;
      const y = high > low ? PAD + (1 - (value - low) / spanV) * (height - 2 * PAD) : height / 2;
      return `${index === 0 ? "M" : "L"}${x.toFixed(1)} ${y.toFixed(1)}`;
    })
    .join(" ");
}

/** The points with this bar's close put in (replacing a point of the same time), last day only. */
export function withBar(points, time, close) {
  const kept = points.filter((point) => point[0] !== time && point[0] > time - DAY_SECONDS);
  kept.push([time, close]);
  kept.sort((a, b) => a[0] - b[0]);
  return kept;
}
