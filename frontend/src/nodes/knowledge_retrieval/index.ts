// How the knowledge_retrieval node looks in the editor and which handles it has (workflows/nodes/knowledge_retrieval.py).
import { text, type NodeUi } from "../types";

const ui: NodeUi = {
  icon: "☰",
  color: "#7c3aed",
  summary: (config) => text(config.query),
};

export default ui;
