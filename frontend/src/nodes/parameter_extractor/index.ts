// How the parameter_extractor node looks in the editor and which handles it has (workflows/nodes/parameter_extractor.py).
import { text, type NodeUi } from "../types";

const ui: NodeUi = {
  icon: "{}",
  color: "#2563eb",
  summary: (config) => text(config.instructions),
};

export default ui;
