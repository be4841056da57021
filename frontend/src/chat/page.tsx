// The full-page web chat (/chat/<connector id>/): a link to share or a kiosk. The page hands
// over its connector, title, session URL and language in <script id="chat-boot">.
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { languageFrom, setLanguage } from "../shared/i18n";
import { ChatView } from "./ChatView";
import { ChatClient } from "./client";
import "./chat.css";

/** frontend/views.py chat_page() */
interface ChatBoot {
  connector: number;
  title: string;
  session_url: string;
  language: string;
}

function readBoot(): ChatBoot {
  const element = document.getElementById("chat-boot");
  if (!element?.textContent) throw new Error("missing #chat-boot");
  return JSON.parse(element.textContent) as ChatBoot;
}

const boot = readBoot();
const language = languageFrom(boot.language);
setLanguage(language);
const client = new ChatClient({
  connector: boot.connector,
  origin: window.location.origin,
  sessionUrl: boot.session_url,
});
window.addEventListener("online", () => client.retryNow());
const root = document.getElementById("root");
if (root) {
  createRoot(root).render(
    <StrictMode>
      <div className="asc-page">
        <main className="asc-page-main">
          <ChatView client={client} title={boot.title} language={language} variant="page" autoFocus />
        </main>
      </div>
    </StrictMode>,
  );
  client.start();
}
