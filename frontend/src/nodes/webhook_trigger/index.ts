// How the webhook_trigger node looks in the editor and which handles it has (workflows/nodes/webhook_trigger.py).
import type { NodeUi } from "../types";

const ui: NodeUi = {
  icon: "⇄",
  color: "#16a34a",
  summary: () => "",
};

export default ui;
