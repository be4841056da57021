// i18next with one namespace per area (studio shell, workflows, knowledge, chat), each area
// registering its own strings, so areas never edit one shared file. Initialised when this
// module loads, so areas may register their strings from their own module's top level.
import i18next from "i18next";
import { initReactI18next } from "react-i18next";

export type Language = "en" | "zh-Hans";
export type Strings = Record<string, string>;

void i18next.use(initReactI18next).init({
  lng: "en",
  fallbackLng: "en",
  interpolation: { escapeValue: false },
  resources: {},
  initAsync: false,
});

/** Django's language code ("zh-hans", "en-us") to ours. */
export function languageFrom(code: string | undefined | null): Language {
  return code && code.toLowerCase().startsWith("zh") ? "zh-Hans" : "en";
}

export function setLanguage(language: Language): void {
  if (i18next.language !== language) void i18next.changeLanguage(language);
  document.documentElement.lang = language === "zh-Hans" ? "zh-Hans" : "en";
}

export function registerStrings(namespace: string, strings: Record<Language, Strings>): void {
  for (const [language, bundle] of Object.entries(strings)) {
    i18next.addResourceBundle(language, namespace, bundle, true, true);
  }
}

export { i18next };
