export function KnowledgeBasePage({ baseId }: { baseId: number }) {
  return <div className="page">Knowledge base {baseId}</div>;
}
