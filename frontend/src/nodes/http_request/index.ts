// How the http_request node looks in the editor and which handles it has (workflows/nodes/http_request.py).
import { text, type NodeUi } from "../types";

const ui: NodeUi = {
  icon: "⇅",
  color: "#0891b2",
  summary: (config) => text(`${String(config.method ?? "GET")} ${String(config.url ?? "")}`),
};

export default ui;
