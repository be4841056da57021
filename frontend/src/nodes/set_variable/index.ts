// How the set_variable node looks in the editor and which handles it has (workflows/nodes/set_variable.py).
import { ids, type NodeUi } from "../types";

const ui: NodeUi = {
  icon: "≔",
  color: "#0891b2",
  summary: (config) => ids(config.assignments, "name").join(", "),
};

export default ui;
