// How the llm node looks in the editor and which handles it has (workflows/nodes/llm.py).
import { text, type NodeUi } from "../types";

const ui: NodeUi = {
  icon: "✦",
  color: "#2563eb",
  summary: (config) => text(config.prompt),
};

export default ui;
