// How the message_trigger node looks in the editor and which handles it has (workflows/nodes/message_trigger.py).
import { text, type NodeUi } from "../types";

const ui: NodeUi = {
  icon: "✉",
  color: "#16a34a",
  summary: (config) => text(config.command_prefix ?? ""),
};

export default ui;
