import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { languageFrom, setLanguage } from "../shared/i18n";
import { App } from "./App";
import { readBoot, type StudioBoot } from "./boot";
import "./locales";
import "./styles.css";

const boot = readBoot<StudioBoot>("studio-boot");
setLanguage(languageFrom(boot.language));
const root = document.getElementById("root");
if (root) {
  createRoot(root).render(
    <StrictMode>
      <App boot={boot} />
    </StrictMode>,
  );
}
