// How the template node looks in the editor and which handles it has (workflows/nodes/template.py).
import { text, type NodeUi } from "../types";

const ui: NodeUi = {
  icon: "¶",
  color: "#0891b2",
  summary: (config) => text(config.template),
};

export default ui;
