// Node types grouped into triggers, processing and output; drag one onto the canvas, or
// press Enter / click to add it in the middle of the view.
import { useTranslation } from "react-i18next";
import { nodeUi } from "../../nodes";
import type { NodeCategory, NodeTypeInfo } from "./types";

export const DRAG_TYPE = "application/x-assistant-node-type";
const CATEGORIES: NodeCategory[] = ["trigger", "processing", "output"];

export function Palette(props: { types: NodeTypeInfo[]; onAdd: (info: NodeTypeInfo) => void }) {
  const { t } = useTranslation("editor");
  return (
    <nav className="palette" aria-label={t("palette")}>
      <h2>{t("palette")}</h2>
      <p className="muted palette-hint">{t("palette_hint")}</p>
      {CATEGORIES.map((category) => {
        const types = props.types.filter((type) => type.category === category);
        if (!types.length) return null;
        return (
          <div key={category} className="palette-group" role="group" aria-labelledby={`palette-${category}`}>
            <h3 id={`palette-${category}`}>{t(`category_${category}`)}</h3>
            <ul>
              {types.map((info) => {
                const ui = nodeUi(info.type);
                return (
                  <li key={info.type}>
                    <button
                      type="button"
                      className="palette-item"
                      draggable
                      title={info.description}
                      aria-label={t("add_node", { title: info.title })}
                      data-node-type={info.type}
                      onDragStart={(event) => {
                        event.dataTransfer.setData(DRAG_TYPE, info.type);
                        event.dataTransfer.effectAllowed = "move";
                      }}
                      onClick={() => props.onAdd(info)}
                    >
                      <span className="palette-icon" aria-hidden="true" style={{ background: ui.color }}>
                        {ui.icon}
                      </span>
                      {info.title}
                    </button>
                  </li>
                );
              })}
            </ul>
          </div>
        );
      })}
    </nav>
  );
}
