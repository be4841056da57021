// How the reply node looks in the editor and which handles it has (workflows/nodes/reply.py).
import { text, type NodeUi } from "../types";

const ui: NodeUi = {
  icon: "↩",
  color: "#db2777",
  summary: (config) => text(config.text),
};

export default ui;
