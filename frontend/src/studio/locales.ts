import { registerStrings } from "../shared/i18n";

registerStrings("studio", {
  en: {
    brand: "Assistant Studio",
    nav_workflows: "Workflows",
    nav_knowledge: "Knowledge",
    nav_admin: "Administration",
    sign_out: "Sign out",
    language: "Language",
    not_found: "There is no page at this address.",
    back_to_workflows: "Back to the workflows",
    skip_to_content: "Skip to the content",
  },
  "zh-Hans": {
    brand: "助手工作室",
    nav_workflows: "工作流",
    nav_knowledge: "知识库",
    nav_admin: "管理后台",
    sign_out: "退出登录",
    language: "语言",
    not_found: "此地址没有页面。",
    back_to_workflows: "返回工作流列表",
    skip_to_content: "跳到正文",
  },
});
