// How the manual_trigger node looks in the editor and which handles it has (workflows/nodes/manual_trigger.py).
import { text, type NodeUi } from "../types";

const ui: NodeUi = {
  icon: "▶",
  color: "#16a34a",
  summary: (config) => text(config.sample_message),
};

export default ui;
