import type { StudioBoot } from "../boot";

export function WorkflowListPage(_props: { boot: StudioBoot }) {
  return <div className="page">Workflows</div>;
}
