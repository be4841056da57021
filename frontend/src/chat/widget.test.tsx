// @vitest-environment jsdom
import { act } from "react";
import { afterEach, describe, expect, it } from "vitest";
import type { WidgetConfig } from "./widget";

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

const config = (connector: number, title = ""): WidgetConfig => ({
  connector,
  title,
  origin: "https://studio.example",
  session: "/connectors/{id}/webchat/session",
});

function hosts(): HTMLElement[] {
  return [...document.querySelectorAll<HTMLElement>("assistant-studio-chat")];
}

describe("the widget's loader queue", () => {
  afterEach(() => {
    document.body.innerHTML = "";
  });

  it("mounts queued and later configs once each, in shadow roots with their own styles", async () => {
    window.AssistantStudioChat = [config(3, "Shop helper")];
    await act(async () => {
      await import("./widget");
    });
    expect(hosts()).toHaveLength(1);
    const shadow = hosts()[0].shadowRoot as ShadowRoot;
    expect(shadow).not.toBeNull();
    // (Vitest does not process CSS, so the sheet is empty here; the browser tests check
    // that the styles apply.)
    const sheets = shadow.querySelectorAll("style").length + (shadow.adoptedStyleSheets ?? []).length;
    expect(sheets).toBe(1);
    const launcher = shadow.querySelector("button.asc-launcher") as HTMLButtonElement;
    expect(launcher.textContent).toBe("Shop helper");
    expect(launcher.getAttribute("aria-expanded")).toBe("false");
    // Nothing of it is in the host page's light DOM.
    expect(document.querySelectorAll("button")).toHaveLength(0);

    await act(async () => {
      window.AssistantStudioChat?.push(config(4), config(3, "Shop helper"));
    });
    expect(hosts().map((host) => host.dataset.connector)).toEqual(["3", "4"]);
    const second = hosts()[1].shadowRoot?.querySelector("button.asc-launcher");
    expect(second?.textContent).toBe("Chat");
  });
});
