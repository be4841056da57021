// How the intent node looks in the editor and which handles it has (workflows/nodes/intent.py).
import { ids, type NodeUi } from "../types";

const ui: NodeUi = {
  icon: "◎",
  color: "#d97706",
  branches: (config) => [...ids(config.rules, "intent"), "fallback"],
  summary: (config) => ids(config.rules, "intent").join(" / "),
};

export default ui;
