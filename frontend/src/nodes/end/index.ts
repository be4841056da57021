// How the end node looks in the editor and which handles it has (workflows/nodes/end.py).
import { text, type NodeUi } from "../types";

const ui: NodeUi = {
  icon: "■",
  color: "#4b5563",
  terminal: true,
  summary: (config) => text(config.output),
};

export default ui;
