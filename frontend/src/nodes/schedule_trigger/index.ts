// How the schedule_trigger node looks in the editor and which handles it has (workflows/nodes/schedule_trigger.py).
import { text, type NodeUi } from "../types";

const ui: NodeUi = {
  icon: "◷",
  color: "#16a34a",
  summary: (config) => text(config.cron),
};

export default ui;
