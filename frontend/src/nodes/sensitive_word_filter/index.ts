// How the sensitive_word_filter node looks in the editor and which handles it has (workflows/nodes/sensitive_word_filter.py).
import { DEFAULT_HANDLE, text, type NodeUi } from "../types";

const ui: NodeUi = {
  icon: "⊘",
  color: "#d97706",
  branches: (config) => config.mode === "block" ? [DEFAULT_HANDLE, "blocked"] : [DEFAULT_HANDLE],
  summary: (config) => text(config.mode),
};

export default ui;
