// How the condition node looks in the editor and which handles it has (workflows/nodes/condition.py).
import { ids, type NodeUi } from "../types";

const ui: NodeUi = {
  icon: "◇",
  color: "#d97706",
  branches: (config) => [...ids(config.cases, "id"), "else"],
  summary: (config) => ids(config.cases, "id").join(" / "),
};

export default ui;
