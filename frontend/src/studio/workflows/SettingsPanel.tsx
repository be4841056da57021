// The selected node's settings: a form generated from its type's JSON Schema (titles,
// descriptions, defaults and enums as the API serves them, in the page's language), its
// name, its failure policy and the validator's problems on their fields.
import Form from "@rjsf/core";
import {
  englishStringTranslator,
  TranslatableString,
  type ErrorSchema,
  type RJSFSchema,
  type UiSchema,
  type WidgetProps,
} from "@rjsf/utils";
import { useMemo, useRef } from "react";
import { useTranslation } from "react-i18next";
import type { TemplateVariable } from "./graph";
import { formValidator } from "./formValidator";
import { errorTree, nodeLevelProblems, simplifySchema, uiSchemaFor } from "./schemaForm";
import type { GraphNode, NodePolicy, NodeTypeInfo, Problem } from "./types";

interface FormContext {
  variables: TemplateVariable[];
  readOnly: boolean;
}

/** A template field: a text area and a picker that inserts `{{ variable }}` at the cursor. */
function TemplateWidget(props: WidgetProps) {
  const { t } = useTranslation("editor");
  const area = useRef<HTMLTextAreaElement>(null);
  const context = props.registry.formContext as FormContext;
  const value = typeof props.value === "string" ? props.value : "";
  const insert = (path: string) => {
    const element = area.current;
    const start = element?.selectionStart ?? value.length;
    const end = element?.selectionEnd ?? value.length;
    const token = `{{ ${path} }}`;
    props.onChange(value.slice(0, start) + token + value.slice(end));
    requestAnimationFrame(() => {
      element?.focus();
      element?.setSelectionRange(start + token.length, start + token.length);
    });
  };
  const groups = new Map<string, TemplateVariable[]>();
  for (const variable of context.variables) {
    groups.set(variable.group, [...(groups.get(variable.group) ?? []), variable]);
  }
  return (
    <div className="template-widget">
      <textarea
        ref={area}
        id={props.id}
        className="template-input"
        value={value}
        rows={4}
        disabled={props.disabled || props.readonly}
        required={props.required}
        onChange={(event) => props.onChange(event.target.value)}
        onBlur={() => props.onBlur(props.id, value)}
        onFocus={() => props.onFocus(props.id, value)}
        spellCheck={false}
      />
      {!context.readOnly && (
        <label className="variable-picker">
          <span className="visually-hidden">{t("insert_variable")}</span>
          <select
            aria-label={`${t("insert_variable")}: ${props.label}`}
            value=""
            onChange={(event) => event.target.value && insert(event.target.value)}
          >
            <option value="">{t("insert_variable_choose")}</option>
            {[...groups].map(([group, variables]) => (
              <optgroup key={group} label={group}>
                {variables.map((variable) => (
                  <option key={variable.path} value={variable.path}>
                    {variable.path}
                  </option>
                ))}
              </optgroup>
            ))}
          </select>
        </label>
      )}
    </div>
  );
}

const WIDGETS = { template: TemplateWidget };

// The form library's own button labels, in the page's language.
const FORM_STRINGS: Partial<Record<TranslatableString, string>> = {
  [TranslatableString.AddButton]: "form_add",
  [TranslatableString.AddItemButton]: "form_add",
  [TranslatableString.RemoveButton]: "form_remove",
  [TranslatableString.MoveUpButton]: "form_move_up",
  [TranslatableString.MoveDownButton]: "form_move_down",
  [TranslatableString.CopyButton]: "form_copy",
};

// Only what the designer sets goes into the config: the server applies the defaults, and
// opening a node's settings must not change the workflow.
const FORM_DEFAULTS = {
  arrayMinItems: { populate: "never" as const },
  emptyObjectFields: "skipDefaults" as const,
};

export interface SettingsPanelProps {
  node: GraphNode;
  info?: NodeTypeInfo;
  problems: Problem[];
  variables: TemplateVariable[];
  readOnly: boolean;
  onConfig: (config: Record<string, unknown>) => void;
  onName: (name: string) => void;
  onPolicy: (policy: NodePolicy) => void;
  onDelete: () => void;
}

export function SettingsPanel(props: SettingsPanelProps) {
  const { t } = useTranslation("editor");
  const { node, info, problems } = props;
  const schema = useMemo(
    () => (info ? (simplifySchema(info.config_schema) as RJSFSchema) : null),
    [info],
  );
  const uiSchema = useMemo(
    () => (info ? (uiSchemaFor(info.config_schema, info.template_fields) as UiSchema) : {}),
    [info],
  );
  const extraErrors = useMemo(() => errorTree(problems) as unknown as ErrorSchema, [problems]);
  const formContext: FormContext = { variables: props.variables, readOnly: props.readOnly };
  const policy = node.policy ?? {};
  const nodeProblems = nodeLevelProblems(problems);
  return (
    <section className="settings-panel" aria-label={t("settings")}>
      <header>
        <h2>{info?.title ?? node.type}</h2>
        {info?.description && <p className="muted">{info.description}</p>}
      </header>
      {nodeProblems.length > 0 && (
        <ul className="notice error node-problems" aria-label={t("graph_problems")}>
          {nodeProblems.map((problem, index) => (
            <li key={index}>{problem.message}</li>
          ))}
        </ul>
      )}
      <div className="field">
        <label htmlFor="node-name">{t("node_name")}</label>
        <input
          id="node-name"
          value={node.name ?? ""}
          readOnly={props.readOnly}
          onChange={(event) => props.onName(event.target.value)}
        />
      </div>
      <div className="field">
        <label htmlFor="node-id">{t("node_id")}</label>
        <input id="node-id" value={node.id} readOnly />
      </div>
      {schema && (
        <Form
          key={node.id}
          schema={schema}
          uiSchema={uiSchema}
          formData={node.config}
          validator={formValidator}
          widgets={WIDGETS}
          formContext={formContext}
          extraErrors={extraErrors}
          showErrorList={false}
          noHtml5Validate
          disabled={props.readOnly}
          idPrefix={`cfg_${node.id}`}
          experimental_defaultFormStateBehavior={FORM_DEFAULTS}
          translateString={(text, params) =>
            FORM_STRINGS[text] ? t(FORM_STRINGS[text] as string) : englishStringTranslator(text, params)
          }
          onChange={(event) => {
            if (!props.readOnly) props.onConfig((event.formData ?? {}) as Record<string, unknown>);
          }}
        >
          <></>
        </Form>
      )}
      {info?.category !== "trigger" && (
        <fieldset className="policy" disabled={props.readOnly}>
          <legend>{t("on_error")}</legend>
          <select
            aria-label={t("on_error")}
            value={policy.on_error ?? "fail"}
            onChange={(event) =>
              props.onPolicy({ ...policy, on_error: event.target.value as NodePolicy["on_error"] })
            }
          >
            <option value="fail">{t("on_error_fail")}</option>
            <option value="continue">{t("on_error_continue")}</option>
            <option value="error_branch">{t("on_error_branch")}</option>
          </select>
          <div className="policy-numbers">
            <label>
              {t("retries")}
              <input
                type="number"
                min={0}
                max={10}
                value={policy.retries ?? 0}
                onChange={(event) => props.onPolicy({ ...policy, retries: Number(event.target.value) })}
              />
            </label>
            <label>
              {t("timeout_s")}
              <input
                type="number"
                min={1}
                value={policy.timeout_s ?? 60}
                onChange={(event) => props.onPolicy({ ...policy, timeout_s: Number(event.target.value) })}
              />
            </label>
          </div>
        </fieldset>
      )}
      {!props.readOnly && (
        <button type="button" className="danger" onClick={props.onDelete}>
          {t("delete_node")}
        </button>
      )}
    </section>
  );
}
