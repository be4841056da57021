// The chat's strings (namespace "chat"). The widget lives in other sites' pages, so it never
// switches the page's language: it asks for a translator fixed to its own language.
import { i18next, registerStrings, type Language } from "../shared/i18n";

const en = {
  conversation: "Conversation",
  you_said: "You",
  assistant_said: "Assistant",
  message_label: "Your message",
  message_placeholder: "Type a message…",
  message_hint: "Enter sends, Shift+Enter starts a new line.",
  send: "Send",
  sending: "Sending…",
  not_sent: "Not sent",
  typing: "The assistant is typing…",
  writing: "The assistant is writing…",
  connecting: "Connecting…",
  reconnecting: "Reconnecting…",
  online: "Connected",
  reconnecting_in: "Connection lost. Reconnecting in {{seconds}} s…",
  retry_now: "Retry now",
  offline_not_found: "This chat is not available. Ask whoever gave you the link.",
  offline_forbidden: "This site may not use this chat.",
  offline_stopped: "Disconnected.",
  queued_hint: "Messages you send now go out when the connection is back.",
  empty: "Ask a question to start the conversation.",
  launcher: "Chat",
  close_chat: "Close chat",
  error_prefix: "The message was refused: {{detail}}",
};

export type ChatKey = keyof typeof en;

const zhHans: Record<ChatKey, string> = {
  conversation: "对话",
  you_said: "你",
  assistant_said: "助手",
  message_label: "你的消息",
  message_placeholder: "输入消息…",
  message_hint: "按 Enter 发送，Shift+Enter 换行。",
  send: "发送",
  sending: "发送中…",
  not_sent: "未发送",
  typing: "助手正在输入…",
  writing: "助手正在回答…",
  connecting: "正在连接…",
  reconnecting: "正在重新连接…",
  online: "已连接",
  reconnecting_in: "连接已断开，{{seconds}} 秒后重新连接…",
  retry_now: "立即重试",
  offline_not_found: "此聊天不可用，请联系提供链接的人。",
  offline_forbidden: "此网站无权使用该聊天。",
  offline_stopped: "已断开连接。",
  queued_hint: "现在发送的消息会在连接恢复后发出。",
  empty: "提一个问题，开始对话。",
  launcher: "在线咨询",
  close_chat: "关闭聊天",
  error_prefix: "消息被拒绝：{{detail}}",
};

registerStrings("chat", { en, "zh-Hans": zhHans });

export type Translate = (key: ChatKey, values?: Record<string, string | number>) => string;

export function translator(language: Language): Translate {
  const fixed = i18next.getFixedT(language, "chat");
  return (key, values) => String(fixed(key, values ?? {}));
}
