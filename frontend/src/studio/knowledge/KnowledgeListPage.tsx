import type { StudioBoot } from "../boot";

export function KnowledgeListPage(_props: { boot: StudioBoot }) {
  return <div className="page">Knowledge bases</div>;
}
