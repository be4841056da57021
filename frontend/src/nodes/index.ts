// Every node type's editor module, by type id. tests/workflows/nodes/test_registry.py checks
// that each shipped node type has its folder here.
import type { NodeUi } from "./types";
import Condition from "./condition";
import End from "./end";
import HttpRequest from "./http_request";
import Intent from "./intent";
import KnowledgeRetrieval from "./knowledge_retrieval";
import Llm from "./llm";
import ManualTrigger from "./manual_trigger";
import MessageTrigger from "./message_trigger";
import ParameterExtractor from "./parameter_extractor";
import Reply from "./reply";
import ScheduleTrigger from "./schedule_trigger";
import SensitiveWordFilter from "./sensitive_word_filter";
import SetVariable from "./set_variable";
import Template from "./template";
import WebhookTrigger from "./webhook_trigger";

export const NODE_UI: Record<string, NodeUi> = {
  condition: Condition,
  end: End,
  http_request: HttpRequest,
  intent: Intent,
  knowledge_retrieval: KnowledgeRetrieval,
  llm: Llm,
  manual_trigger: ManualTrigger,
  message_trigger: MessageTrigger,
  parameter_extractor: ParameterExtractor,
  reply: Reply,
  schedule_trigger: ScheduleTrigger,
  sensitive_word_filter: SensitiveWordFilter,
  set_variable: SetVariable,
  template: Template,
  webhook_trigger: WebhookTrigger,
};

export const FALLBACK_UI: NodeUi = { icon: "?", color: "#6b7280" };

export function nodeUi(type: string): NodeUi {
  return NODE_UI[type] ?? FALLBACK_UI;
}
